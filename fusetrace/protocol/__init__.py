"""The FUSE wire protocol, pure: bytes in, decoded frames out, and back (design.md §2).

Public API (other packages use only these names; all are importable from their module):

* ``abi``: ``Opcode``, ``NotifyCode`` (IntEnum), ``InitFlag`` (64-bit IntFlag: bit n of
  ``flags`` is bit n, bit n of ``flags2`` is bit 32+n; ``InitFlag.from_words(flags, flags2)``,
  ``.words()``), ``FattrFlag``, ``FopenFlag``, ``OpenInFlag``, ``AttrFlag``, ``GetattrFlag``,
  ``ReleaseFlag``, ``WriteFlag``, ``ReadFlag``, ``LkFlag``, ``FsyncFlag``, ``IoctlFlag``,
  ``PollFlag``, ``SetxattrFlag``, ``InvalEntryFlag``, ``CuseInitFlag``; the kernel constants
  (``FUSE_ROOT_ID``, ``FUSE_INT_REQ_BIT``, ``FUSE_UNIQUE_RESEND``, ``ERRNO_LIMIT``, the
  ``FUSE_COMPAT_*`` sizes, ``S_IF*`` file types, ...); ``flag_names(value, FlagClass)``,
  ``opcode_name(n)``, ``notify_name(n)``.
* ``header``: ``IN_HEADER_SIZE`` (40), ``OUT_HEADER_SIZE`` (16), ``InHeader``/``OutHeader``
  named tuples and ``parse_in_header(data, order='<')`` / ``parse_out_header(data, order)``
  (``order``: '<', '>', 'little' or 'big'), ``pack_in_header`` / ``pack_out_header``,
  ``in_header_struct(order)`` / ``out_header_struct(order)``: all on ``struct.Struct`` (the
  hot path: the proxy and tracker use only these). Short data raises ``DecodeError``.
* ``registry``: ``OPS: dict[int, OpSpec]``, the one table of opcodes: request and reply
  argument layouts (``Arg``/``ArgKind``; struct args name kernel structs), ``reply``
  (``ReplyShape`` EMPTY/FIXED/VARIABLE/NONE), ``reply_probe`` (GETXATTR/LISTXATTR size 0),
  ``reply_optional`` (INTERRUPT), ``since`` (minor), ``lookup`` (``LookupEffect``),
  ``handle`` (``HandleEffect``), ``fh_fields`` and ``fh_when``, ``creates`` and
  ``file_type``, ``enosys_remembered``, ``extensions``, ``fh_kind``, ``fh_nodes``.
  ``NO_REPLY_OPS`` (never answered) and ``NOT_AWAITED_OPS`` (also INTERRUPT). ``NOTIFY: dict[int,
  NotifySpec]`` (args, ``NotifySize`` rule) for notification codes. Nothing else in
  fusetrace lists opcodes.
* ``schemas``: ``schemas(order)`` -> ``{kernel struct name: construct schema}`` (with the
  compat variants ``*_compat``), ``flat(order)`` -> the ``struct`` layouts derived from them,
  ``struct_for(name, negotiated)`` (compat size for the session), ``plain(container)``.
* ``session.Negotiated``: the frozen negotiated-session record (byte order, kernel
  major/minor/offered flags/max_readahead, reply major/minor as the kernel stores it, accepted
  ``flags``, max_write, max_pages, time_gran, max_background, congestion_threshold,
  map_alignment, max_stack_depth, request_timeout, initialized, failed), built with
  ``Negotiated.default(byte_order).with_init_request(body).with_init_reply(body, error)``.
* ``decode``: ``decode_request(data, negotiated=None, *, engine="fast", orig_len=None)``,
  ``decode_reply(data, request_opcode, negotiated=None, *, request_body=None, ...)``,
  ``decode_notify(data, negotiated=None, ...)``, ``decode_outbound(data, request_opcode,
  negotiated=None, ...)`` -> ``Decoded`` (``kind`` request/reply/notify/interrupt-reply,
  ``header``, ``opcode``, ``name``, ``body`` as plain dicts/lists, undecoded ``remainder``,
  ``problems: list[Problem(code, message)]``; properties ``unique``, ``error``, ``nodeid``,
  ``ok``). They raise only ``fusetrace.errors.DecodeError``, and only when not even the
  header can be read. ``engine="fast"`` reads structs with the derived layouts and takes
  short cuts for well-formed common shapes; ``engine="construct"`` is the reference (construct
  schemas, general interpreter); both give equal results.
* ``connection``: ``Connection(byte_order).feed(record) -> Exchange``: the one pairer and
  session builder. The header is read once (``.header``); a reply is paired with its request
  by (channel, unique with bit 0 masked) when the kernel would look it up (``.request``;
  ``.interrupt`` for an interrupt reply); ``.negotiated`` is learnt from the first INIT pair;
  ``Exchange.decoded(engine)`` decodes the body lazily, once.
* ``stream``: ``FrameDecoder(byte_order="little", *, engine="fast").feed(record) ->
  DecodedFrame`` (``record``, ``decoded`` (None if the header is unreadable, then
  ``error``), ``request`` (the paired request frame of a reply), ``latency_ns``), on a
  ``Connection`` (``.connection``, ``.negotiated``, ``.outstanding``); ``.frame(exchange)``
  for an exchange someone else fed.
* ``encode``: ``encode_request(opcode, body, *, unique, nodeid=0, uid=0, gid=0, pid=0,
  total_extlen=None, negotiated=None)``, ``encode_reply(opcode, body, *, unique, error=0,
  negotiated=None, probe=False)``, ``encode_interrupt_reply(unique, error)``,
  ``encode_notify(code, body, *, negotiated=None)``, ``encode_args``, ``build_struct``,
  ``with_unique(frame, unique)``: bodies in the decoder's shape; lengths filled in; bad input
  raises ``EncodeError``.
"""
