"""The FUSE wire protocol, pure: bytes in, typed frames out, and back (design.md §2).

Public API (other packages use only these names):

* ``abi``: ``Opcode``, ``NotifyCode`` (IntEnum), ``InitFlag`` (64-bit IntFlag: bit n of
  ``flags`` is bit n, bit n of ``flags2`` is bit 32+n), ``FattrFlag``, ``FopenFlag``, ... and
  the kernel constants (``FUSE_ROOT_ID``, ``FUSE_INT_REQ_BIT``, ``FUSE_UNIQUE_RESEND``, ...).
* ``header``: ``IN_HEADER_SIZE`` (40), ``OUT_HEADER_SIZE`` (16), ``InHeader``/``OutHeader``
  named tuples and ``parse_in_header(data, order)`` / ``parse_out_header(data, order)`` on
  ``struct.Struct`` (the hot path: the proxy and tracker use only these).
* ``session.Negotiated``: the frozen negotiated-session record (byte order, kernel and
  daemon major/minor, 64-bit flags offered and accepted, max_write, max_pages, ...), built
  from the INIT request and reply.
* ``registry.OPS``: ``dict[int, OpSpec]``, the one table of opcodes (request schema, reply
  schema or "no reply", reply shape fixed/variable/empty, minor introduced, effect on lookup
  counts and on file handles). ``registry.NOTIFY``: the same for notification codes.
  Nothing else in fusetrace lists opcodes.
* ``decode``: ``decode_request(data, negotiated)``, ``decode_reply(data, request_opcode,
  negotiated)``, ``decode_notify(data, negotiated)`` -> ``Decoded`` (header, opcode/name,
  body fields, undecoded ``remainder`` and ``problems``). They raise only
  ``fusetrace.errors.DecodeError``, and only when not even the header can be read.
* ``stream.FrameDecoder``: stateful over a capture: learns ``Negotiated`` from the INIT pair,
  pairs each reply with its request (per channel and unique) and gives ``DecodedFrame``s.
* ``encode``: builders for every request, reply and notification (tests and replay).
"""
