/*
 * fusetrace's compiled forwarding core: the two forwarding loops and the ring that hands
 * frames to the capture thread, without the interpreter lock.
 *
 * The Python side (fusetrace/proxy/core.py) runs each loop in a thread of its own
 * (Core.run_k2d, Core.run_d2k); a loop holds no GIL while it reads, forwards and hands
 * frames on, and takes it only for the INIT pair, once per mount, to let the Python code
 * in forward.py rewrite it. The capture thread takes whatever is ready in one call
 * (Core.take), as a list of (direction, t_ns, data, comment, result) in the order the
 * frames crossed /dev/fuse; the plain frames the core writes as packet blocks itself
 * (Core.write), and while only such frames come the capture thread stays here, pausing
 * and writing in turn (Core.pump).
 *
 * The ring: slots in a fixed array and the bytes of small frames in an arena, both used
 * in order. A loop reserves its slot under a mutex before it forwards the frame (so the
 * capture's order is the order of the device), fills it, and marks it ready: a request
 * at once, a reply once its write to /dev/fuse returned and the result (0, or the errno
 * the kernel refused it with) is in the slot. The capture thread takes slots up to the
 * first that is not ready. A full ring makes the loops wait: a frame is never dropped,
 * unless the capture has failed (Core.discard). Large frames are not copied: the loop
 * lends the buffer it read the frame into (a page-aligned mmap the Python side owns) and
 * reads the next frame into a free one; the capture thread gives it back (Core.give, or
 * Core.write as it writes the frame). A loop that has lent a megabyte wakes the capture
 * thread before its pause ends (LEND_WAKE, or what Core.set_lend_wake sets).
 *
 * While the capture thread pumps to a pipe, a socket or a character device (Core.pump
 * with inline), a loop that has just forwarded a large frame writes what is ready itself,
 * that frame included, with writes that never wait (RWF_NOWAIT): its buffer comes back at
 * once and the capture thread need not wake. Whoever takes frames from the ring (a loop's
 * write, Core.write, Core.pump, Core.take) holds the writer's lock, which a loop only
 * tries; what a short write leaves of its blocks is kept (the carry) and goes out before
 * anything else.
 *
 * Wire facts used here, as in bench/relay.c: a reply's len (u32 at 0) and unique (u64 at
 * 8); a request's unique (u64 at 8). Everything else about the protocol stays in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { IN = 0, OUT = 1 };
enum { FILLING = 0, DATA = 1, READY = 2 };
#define NO_RESULT (-1)
#define NERRNO 256

typedef struct {
	uint64_t t_ns;
	uint64_t arena_pos; /* where the frame's bytes are (a position, not an offset) */
	uint64_t arena_end; /* the arena position after this slot */
	Py_ssize_t len;
	PyObject *obj;     /* the captured frame as a callback made it (owned), or NULL */
	PyObject *comment; /* owned, or NULL */
	int buf;           /* the lent buffer holding the frame, or -1 */
	int dir;
	int result;
	int cut;
	int state;
} Slot;

typedef struct {
	PyObject_HEAD
	int devfd, sockfd;
	Py_ssize_t bufsize;
	Py_ssize_t lend_min;
	int nbufs; /* per direction */
	PyObject *views; /* tuple: a memoryview of each buffer */
	Py_buffer *held;
	char **addr;
	int *free_stack[2];
	int nfree[2];
	PyObject *on_request, *on_init_reply, *dirs[2];
	Slot *slots;
	uint64_t nslots, head, tail;
	char *arena;
	uint64_t arena_size, arena_head, arena_tail;
	pthread_mutex_t lock;
	pthread_cond_t space;
	int waiting, discard;
	/* the capture thread's wait between drains (Core.wait, Core.pump): woken by a loop
	 * that found the ring full, or by Core.wake (which also sets called, ending a pump) */
	pthread_cond_t drain;
	int woken, called;
	int dozing;      /* Core.pump sleeps without a timeout until the next frame */
	uint64_t drains; /* Core.pump's pauses that ended */
	/* bytes of large frames a loop lends before it wakes the capture thread (0: only
	 * once it has lent half its buffers) */
	uint64_t lend_wake;
	/* who takes from the ring's tail (and uses stage, iov, carry): held by the capture
	 * thread, tried by a loop (write_inline) */
	pthread_mutex_t wlock;
	/* where the loops write (write_inline) while Core.pump lets them; -1: they do not
	 * now, INLINE_REFUSED: never again (the descriptor refused or failed) */
	int inline_fd;
	char *carry;   /* the rest of the blocks a short write left, to go out first */
	size_t carry_len, carry_off, carry_cap;
	uint64_t inlined, carried;
	uint64_t init_unique;
	/* pcapng Enhanced Packet Blocks the core encodes itself (Core.set_blocks): the block
	 * type, and per direction the options (flags, end of options) of a plain frame */
	uint32_t block_type;
	PyObject *block_opts[2];
	Py_ssize_t snaplen;
	uint64_t waits, encoded;
	/* each loop's own counters, on cache lines of their own: the loops run on two CPUs */
	uint64_t inbound __attribute__((aligned(64))), lent_in;
	uint64_t outbound __attribute__((aligned(64))), lent_out, joined;
	char *stage;       /* Core.write's blocks and parts of blocks */
	struct iovec *iov; /* and its parts */
	uint64_t refused[NERRNO];
} Core;

/* what a loop lends (bytes of large frames in its buffers, as the frame it lends now
 * counts them) before it wakes the capture thread, which writes them out and gives the
 * buffers back: the loop then receives into a few buffers still in its caches, rather
 * than into all those a 5 ms pause would leave lent (copying into cold buffers cost the
 * loop of 1 GiB reads twice the relay's time in recv(), profiled paired) */
#define LEND_WAKE (1u << 20)
#define INLINE_REFUSED (-2)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* `ns` nanoseconds from now on the clock the capture thread's waits use (CLOCK_MONOTONIC,
 * as Core_new sets for the drain condition) */
static struct timespec deadline(long long ns)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	ns += (long long)t.tv_nsec;
	t.tv_sec += (time_t)(ns / 1000000000);
	t.tv_nsec = (long)(ns % 1000000000);
	return t;
}

static int take_free(Core *c, int dir)
{
	int b = -1;
	pthread_mutex_lock(&c->lock);
	if (c->nfree[dir] > 0)
		b = c->free_stack[dir][--c->nfree[dir]];
	pthread_mutex_unlock(&c->lock);
	return b;
}

static void put_free(Core *c, int b)
{
	int dir = b / c->nbufs;
	pthread_mutex_lock(&c->lock);
	if (c->nfree[dir] < c->nbufs)
		c->free_stack[dir][c->nfree[dir]++] = b;
	pthread_mutex_unlock(&c->lock);
}

/* A slot for the next frame of direction dir, `n` bytes long, under one lock: with *spare
 * set to a free buffer of the direction's when lend (the frame stays in the buffer it was
 * read into, lent, and the loop reads on into the spare), else -1 and `n` bytes of arena
 * reserved for a copy. NULL when the capture has failed and frames are dropped (*spare is
 * then -1). Waits while the ring is full. */
static Slot *reserve(Core *c, int dir, Py_ssize_t n, int lend, int *spare)
{
	Slot *s;
	uint64_t pos = 0;
	Py_ssize_t copy = n;
	*spare = -1;
	pthread_mutex_lock(&c->lock);
	int wake = 0;
	if (lend && c->nfree[dir] > 0) {
		*spare = c->free_stack[dir][--c->nfree[dir]];
		copy = 0;
		/* lent, with this frame: all but the spare and the free ones */
		uint64_t lent = (uint64_t)(c->nbufs - c->nfree[dir] - 1);
		/* (or half the buffers, whatever the bytes: once they are all lent, frames
		 * are copied into the ring) */
		if (!c->woken && ((c->lend_wake && lent * (uint64_t)n >= c->lend_wake) ||
				  2 * lent >= (uint64_t)c->nbufs)) {
			c->woken = 1;
			wake = 1;
		}
	}
	for (;;) {
		if (c->discard) {
			if (*spare >= 0 && c->nfree[dir] < c->nbufs)
				c->free_stack[dir][c->nfree[dir]++] = *spare;
			*spare = -1;
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		if (c->head - c->tail < c->nslots) {
			if (!copy)
				break;
			pos = c->arena_head;
			uint64_t phys = pos % c->arena_size;
			if (phys + (uint64_t)copy > c->arena_size)
				pos += c->arena_size - phys; /* never across the end: start over */
			if (pos + (uint64_t)copy - c->arena_tail <= c->arena_size)
				break;
		}
		/* full: the capture thread makes room now, not at the end of its pause */
		c->woken = 1;
		pthread_cond_signal(&c->drain);
		c->waiting++;
		c->waits++;
		pthread_cond_wait(&c->space, &c->lock);
		c->waiting--;
	}
	s = &c->slots[c->head % c->nslots];
	c->head++;
	if (c->dozing) { /* the first frame after a quiet spell: the pump's pause starts */
		c->dozing = 0;
		wake = 1;
	}
	__atomic_store_n(&s->state, FILLING, __ATOMIC_RELAXED);
	s->obj = NULL;
	s->comment = NULL;
	s->buf = -1;
	s->cut = 0;
	s->result = NO_RESULT;
	if (copy) {
		s->arena_pos = pos;
		c->arena_head = pos + (uint64_t)copy;
	}
	s->arena_end = c->arena_head;
	pthread_mutex_unlock(&c->lock);
	if (wake) /* after the unlock: the woken thread takes the lock at once */
		pthread_cond_signal(&c->drain);
	return s;
}

static void write_inline(Core *c);

static char *arena_at(Core *c, uint64_t pos)
{
	return c->arena + pos % c->arena_size;
}

/* A loop's ending, as (reason, detail); NULL with an exception set when that fails. */
static PyObject *ending(const char *reason, const char *what, int err)
{
	PyObject *detail;
	if (what == NULL)
		return Py_BuildValue("(ss)", reason, "");
	if (err == 0)
		return Py_BuildValue("(ss)", reason, what);
	detail = PyUnicode_FromFormat("%s: %s", what, strerror(err));
	if (detail == NULL)
		return NULL;
	return Py_BuildValue("(sN)", reason, detail);
}

/* The exception a callback raised, as the detail of a "forwarding failed" ending. */
static PyObject *failed(void)
{
	PyObject *type, *value, *tb, *text;
	PyErr_Fetch(&type, &value, &tb);
	text = value ? PyObject_Repr(value) : PyUnicode_FromString("unknown error");
	Py_XDECREF(type);
	Py_XDECREF(value);
	Py_XDECREF(tb);
	if (text == NULL)
		return NULL;
	return Py_BuildValue("(sN)", "forwarding failed", text);
}

/* Calls one of the INIT rewriters (forward.py) on a frame, with the interpreter lock held:
 * 0 with *forward (the frame to forward, a new reference), *comment (a new reference, or
 * NULL for None) and, when unique is not NULL, the request's *unique; -1 with the exception
 * set. */
static int rewrite(PyObject *fn, const char *buf, Py_ssize_t n, PyObject **forward,
		   PyObject **comment, unsigned long long *unique)
{
	PyObject *f = NULL, *cm = NULL;
	PyObject *r = PyObject_CallFunction(fn, "y#", buf, n);
	int ok = r != NULL && (unique != NULL ? PyArg_ParseTuple(r, "SOK", &f, &cm, unique)
					      : PyArg_ParseTuple(r, "SO", &f, &cm));
	if (!ok) {
		Py_XDECREF(r);
		return -1;
	}
	Py_INCREF(f);
	if (cm == Py_None)
		cm = NULL;
	else
		Py_INCREF(cm);
	Py_DECREF(r);
	*forward = f;
	*comment = cm;
	return 0;
}

static PyObject *Core_run_k2d(Core *c, PyObject *Py_UNUSED(ignored))
{
	int cur = take_free(c, IN);
	int first = 1;
	const char *reason = NULL, *what = NULL;
	int err = 0;
	PyObject *fail = NULL;
	if (cur < 0) {
		PyErr_SetString(PyExc_RuntimeError, "no receive buffer");
		return NULL;
	}
	Py_BEGIN_ALLOW_THREADS
	for (;;) {
		char *buf = c->addr[cur];
		ssize_t n = read(c->devfd, buf, c->bufsize);
		if (n < 0) {
			if (errno == ENOENT || errno == EINTR)
				continue; /* interrupted before we read it */
			if (errno == ENODEV || errno == ECONNABORTED) {
				reason = "unmounted";
			} else {
				reason = "device error";
				what = "reading /dev/fuse";
				err = errno;
			}
			break;
		}
		if (n == 0) { /* never from /dev/fuse; a test double's end of file */
			reason = "unmounted";
			break;
		}
		uint64_t t = now_ns();
		PyObject *forward = NULL, *comment = NULL;
		if (first) {
			/* the INIT request: rewritten in Python (forward.py), captured as read */
			first = 0;
			Py_BLOCK_THREADS
			unsigned long long unique = 0;
			if (rewrite(c->on_request, buf, (Py_ssize_t)n, &forward, &comment, &unique) < 0) {
				fail = failed();
				Py_UNBLOCK_THREADS
				break;
			}
			__atomic_store_n(&c->init_unique, (uint64_t)unique, __ATOMIC_RELEASE);
			Py_UNBLOCK_THREADS
		}
		int spare;
		Slot *s = reserve(c, IN, n, n >= c->lend_min, &spare);
		if (s != NULL) {
			s->t_ns = t;
			s->dir = IN;
			s->len = n;
			s->comment = comment;
			if (spare >= 0) {
				s->buf = cur;
				c->lent_in++;
			} else {
				memcpy(arena_at(c, s->arena_pos), buf, n);
			}
			__atomic_store_n(&s->state, READY, __ATOMIC_RELEASE);
		}
		c->inbound++;
		const char *data = forward ? PyBytes_AS_STRING(forward) : buf;
		Py_ssize_t len = forward ? PyBytes_GET_SIZE(forward) : n;
		ssize_t sent = send(c->sockfd, data, len, MSG_NOSIGNAL);
		int send_err = errno;
		if (forward != NULL || (s == NULL && comment != NULL)) {
			Py_BLOCK_THREADS
			Py_XDECREF(forward);
			if (s == NULL)
				Py_XDECREF(comment);
			Py_UNBLOCK_THREADS
		}
		if (s != NULL && n >= c->lend_min && sent >= 0)
			write_inline(c);
		if (spare >= 0)
			cur = spare;
		if (sent < 0) {
			/* EPIPE / ECONNRESET: the daemon closed its end */
			reason = "daemon closed";
			what = "sending to the daemon";
			err = send_err;
			break;
		}
	}
	Py_END_ALLOW_THREADS
	if (fail != NULL || PyErr_Occurred())
		return fail;
	return ending(reason, what, err);
}

static PyObject *Core_run_d2k(Core *c, PyObject *Py_UNUSED(ignored))
{
	int cur = take_free(c, OUT);
	int init_pending = 1;
	Py_ssize_t size = c->bufsize; /* one byte more than any frame may have */
	const char *reason = NULL, *what = NULL;
	int err = 0;
	PyObject *fail = NULL;
	if (cur < 0) {
		PyErr_SetString(PyExc_RuntimeError, "no receive buffer");
		return NULL;
	}
	Py_BEGIN_ALLOW_THREADS
	for (;;) {
		char *buf = c->addr[cur];
		ssize_t got = recv(c->sockfd, buf, size, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			reason = "daemon closed";
			what = "receiving from the daemon";
			err = errno;
			break;
		}
		if (got == 0) {
			reason = "daemon closed";
			break;
		}
		uint64_t t = now_ns();
		uint64_t unique = 0;
		int cut = 0;
		if (got >= 16) {
			uint32_t length;
			memcpy(&length, buf, 4);
			memcpy(&unique, buf + 8, 8);
			if ((ssize_t)length > got && got < size) {
				/* spliced by the daemon: the rest follows in more messages (see
				 * Forwarder._reassemble) */
				ssize_t end = (ssize_t)length < size - 1 ? (ssize_t)length : size - 1;
				c->joined++;
				while (got < end) {
					ssize_t more = recv(c->sockfd, buf + got, size - got, 0);
					if (more < 0 && errno == EINTR)
						continue;
					if (more <= 0) {
						reason = "daemon closed";
						what = more < 0 ? "receiving from the daemon"
								: "the daemon closed its socket inside a reply";
						err = more < 0 ? errno : 0;
						break;
					}
					got += more;
				}
				if (reason != NULL)
					break;
			}
		}
		if (got >= size) {
			got = size - 1;
			cut = 1;
		}
		PyObject *obj = NULL, *comment = NULL;
		if (init_pending && unique != 0 &&
		    unique == __atomic_load_n(&c->init_unique, __ATOMIC_ACQUIRE)) {
			/* the INIT reply: rewritten in Python, captured as the kernel sees it */
			init_pending = 0;
			Py_BLOCK_THREADS
			if (rewrite(c->on_init_reply, buf, (Py_ssize_t)got, &obj, &comment, NULL) < 0) {
				fail = failed();
				Py_UNBLOCK_THREADS
				break;
			}
			Py_UNBLOCK_THREADS
			cut = 0;
		}
		int spare;
		Slot *s = reserve(c, OUT, obj == NULL ? got : 0, obj == NULL && got >= c->lend_min,
				  &spare);
		const char *data = obj ? PyBytes_AS_STRING(obj) : buf;
		Py_ssize_t len = obj ? PyBytes_GET_SIZE(obj) : got;
		if (s != NULL) {
			s->t_ns = t;
			s->dir = OUT;
			s->len = len;
			s->obj = obj;
			s->comment = comment;
			s->cut = cut;
			if (spare >= 0) {
				s->buf = cur;
				c->lent_out++;
			} else if (obj == NULL)
				memcpy(arena_at(c, s->arena_pos), buf, got);
			__atomic_store_n(&s->state, DATA, __ATOMIC_RELEASE);
		}
		c->outbound++;
		ssize_t w = write(c->devfd, data, len);
		int result = w < 0 ? errno : 0;
		if (s != NULL) {
			s->result = result;
			__atomic_store_n(&s->state, READY, __ATOMIC_RELEASE);
			if (got >= c->lend_min && result == 0)
				write_inline(c);
		} else if (obj != NULL || comment != NULL) {
			Py_BLOCK_THREADS
			Py_XDECREF(obj);
			Py_XDECREF(comment);
			Py_UNBLOCK_THREADS
		}
		if (spare >= 0)
			cur = spare;
		if (w < 0) {
			if (result == ENODEV || result == ECONNABORTED) {
				reason = "unmounted";
				break;
			}
			c->refused[result < NERRNO ? result : 0]++;
		}
	}
	Py_END_ALLOW_THREADS
	if (fail != NULL || PyErr_Occurred())
		return fail;
	return ending(reason, what, err);
}

/* The size of a copied frame's Enhanced Packet Block, laid out as CaptureWriter.block
 * lays it out (channel 0; data cut to the snap length; options as set_blocks gave them). */
static Py_ssize_t block_size(Core *c, Slot *s)
{
	Py_ssize_t cap = s->len;
	if (c->snaplen > 0 && cap > c->snaplen)
		cap = c->snaplen;
	return 28 + cap + (4 - cap % 4) % 4 + PyBytes_GET_SIZE(c->block_opts[s->dir]) + 4;
}

static void encode_block(Core *c, Slot *s, char *p)
{
	PyObject *opts = c->block_opts[s->dir];
	Py_ssize_t cap = s->len;
	if (c->snaplen > 0 && cap > c->snaplen)
		cap = c->snaplen;
	Py_ssize_t pad = (4 - cap % 4) % 4;
	Py_ssize_t olen = PyBytes_GET_SIZE(opts);
	uint32_t total = (uint32_t)(28 + cap + pad + olen + 4);
	uint32_t head[7] = {c->block_type, total, 0, (uint32_t)(s->t_ns >> 32),
			    (uint32_t)(s->t_ns & 0xffffffffu), (uint32_t)cap, (uint32_t)s->len};
	memcpy(p, head, sizeof head);
	memcpy(p + 28, arena_at(c, s->arena_pos), cap);
	memset(p + 28 + cap, 0, pad);
	memcpy(p + 28 + cap + pad, PyBytes_AS_STRING(opts), olen);
	memcpy(p + total - 4, &total, 4);
}

/* Whether take(blocks=True) hands this slot over as a packet block. */
static int encodable(Core *c, Slot *s, int state)
{
	return c->block_opts[s->dir] != NULL && s->obj == NULL && s->buf < 0 &&
	       s->comment == NULL && !s->cut &&
	       (s->dir == IN || (state == READY && s->result == 0));
}

/* The frames ready so far, in order: [(direction, t_ns, data, comment, result), ...].
 * With final (the loops have ended), a reply whose write never returned comes with
 * result None. With blocks (and set_blocks called), small frames without a comment,
 * accepted by the kernel if they are replies, come as their Enhanced Packet Blocks
 * instead: each run of such frames as one bytes object, the blocks one after the other
 * (Core.encoded counts them). One thread takes at a time. */
static PyObject *Core_take(Core *c, PyObject *args)
{
	int final = 0, blocks = 0;
	uint64_t head, i, freed_to = 0;
	PyObject *out;
	if (!PyArg_ParseTuple(args, "|pp", &final, &blocks))
		return NULL;
	out = PyList_New(0);
	if (out == NULL)
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	pthread_mutex_lock(&c->wlock);
	Py_END_ALLOW_THREADS
	if (c->carry_off < c->carry_len) {
		/* the rest of blocks a loop's short write left: before anything else */
		PyObject *b = PyBytes_FromStringAndSize(c->carry + c->carry_off,
							(Py_ssize_t)(c->carry_len - c->carry_off));
		if (b == NULL || PyList_Append(out, b) < 0) {
			Py_XDECREF(b);
			goto error;
		}
		Py_DECREF(b);
		c->carry_off = c->carry_len = 0;
	}
	pthread_mutex_lock(&c->lock);
	head = c->head;
	pthread_mutex_unlock(&c->lock);
	for (i = c->tail; i < head; i++) {
		Slot *s = &c->slots[i % c->nslots];
		int state = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
		if (state == FILLING || (state == DATA && !final))
			break;
		if (blocks && encodable(c, s, state)) {
			/* the run of frames that go as blocks, from this one on */
			uint64_t j = i, end;
			Py_ssize_t size = 0;
			for (; j < head; j++) {
				Slot *r = &c->slots[j % c->nslots];
				int st = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
				if (st == FILLING || (st == DATA && !final) || !encodable(c, r, st))
					break;
				size += block_size(c, r);
			}
			end = j;
			PyObject *b = PyBytes_FromStringAndSize(NULL, size);
			if (b == NULL)
				goto error;
			char *p = PyBytes_AS_STRING(b);
			for (j = i; j < end; j++) {
				Slot *r = &c->slots[j % c->nslots];
				encode_block(c, r, p);
				p += block_size(c, r);
				freed_to = r->arena_end;
			}
			c->encoded += end - i;
			if (PyList_Append(out, b) < 0) {
				Py_DECREF(b);
				goto error;
			}
			Py_DECREF(b);
			i = end - 1;
			continue;
		}
		PyObject *data;
		if (s->obj != NULL) {
			data = s->obj;
			s->obj = NULL;
		} else if (s->buf >= 0) {
			data = PySequence_GetSlice(PyTuple_GET_ITEM(c->views, s->buf), 0, s->len);
		} else {
			data = PyBytes_FromStringAndSize(arena_at(c, s->arena_pos), s->len);
		}
		if (data == NULL)
			goto error;
		PyObject *comment = s->comment;
		s->comment = NULL;
		if (comment == NULL && s->cut)
			comment = PyUnicode_FromFormat("fusetrace: cut to %zd bytes, the daemon sent more",
						       s->len);
		if (comment == NULL && !PyErr_Occurred()) {
			comment = Py_None;
			Py_INCREF(comment);
		}
		PyObject *result;
		if (s->dir == IN || state != READY) {
			result = Py_None;
			Py_INCREF(result);
		} else {
			result = PyLong_FromLong(s->result);
		}
		PyObject *item = Py_BuildValue("(OKNNN)", c->dirs[s->dir],
					       (unsigned long long)s->t_ns, data, comment, result);
		if (item == NULL || PyList_Append(out, item) < 0) {
			Py_XDECREF(item);
			goto error;
		}
		Py_DECREF(item);
		freed_to = s->arena_end;
	}
	if (i != c->tail) {
		pthread_mutex_lock(&c->lock);
		c->tail = i;
		c->arena_tail = freed_to;
		if (c->waiting)
			pthread_cond_broadcast(&c->space);
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_unlock(&c->wlock);
	return out;
error:
	pthread_mutex_unlock(&c->wlock);
	Py_DECREF(out);
	return NULL;
}

/* Core.write: frames up to this long are copied into the block with their header and
 * trailer (one part); longer ones are written from where they are (the arena, or the
 * buffer they were lent in), between a header and a trailer of their own */
#define WRITE_JOIN_MAX 4096
#define WRITE_STAGE (1 << 20)
#define WRITE_IOV 1024

/* Whether Core.write writes this slot itself: as encodable, a lent frame too. */
static int writable(Core *c, Slot *s, int state)
{
	return c->block_opts[s->dir] != NULL && s->obj == NULL && s->comment == NULL && !s->cut &&
	       (s->dir == IN || (state == READY && s->result == 0));
}

/* All of iov[0..n) to fd (at *pos with pwritev when pos is not NULL), going on after a
 * short write; 0, or the errno. */
static int write_all(int fd, struct iovec *iov, int n, long long *pos, Py_ssize_t *written)
{
	while (n > 0) {
		ssize_t done = pos ? pwritev(fd, iov, n, (off_t)*pos) : writev(fd, iov, n);
		if (done < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (done == 0)
			return EIO;
		*written += done;
		if (pos)
			*pos += done;
		while (n > 0 && (size_t)done >= iov->iov_len) {
			done -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + done;
			iov->iov_len -= (size_t)done;
		}
	}
	return 0;
}

/* What a short write that was not to wait left of iov[0..n) (its first `done` bytes
 * went): kept in the carry, which goes out before anything else. 0, or, when there is no
 * memory to keep it, the errno of writing it at once, waiting if need be. */
static int keep_carry(Core *c, int fd, struct iovec *iov, int n, size_t done,
		      Py_ssize_t *written)
{
	while (done >= iov->iov_len) {
		done -= iov->iov_len;
		iov++;
		n--;
	}
	iov->iov_base = (char *)iov->iov_base + done;
	iov->iov_len -= done;
	size_t rest = 0;
	for (int k = 0; k < n; k++)
		rest += iov[k].iov_len;
	if (rest > c->carry_cap) {
		char *p = realloc(c->carry, rest);
		if (p == NULL)
			return write_all(fd, iov, n, NULL, written);
		c->carry = p;
		c->carry_cap = rest;
	}
	c->carry_off = 0;
	c->carry_len = 0;
	for (int k = 0; k < n; k++) {
		memcpy(c->carry + c->carry_len, iov[k].iov_base, iov[k].iov_len);
		c->carry_len += iov[k].iov_len;
	}
	c->carried++;
	return 0;
}

/* Writes the carry first (see keep_carry): 0 once it is out, or an errno (EAGAIN: a write
 * that would have waited, with nowait). */
static int write_carry(Core *c, int fd, long long *pos, Py_ssize_t *written, int nowait)
{
	while (c->carry_off < c->carry_len) {
		struct iovec v = {c->carry + c->carry_off, c->carry_len - c->carry_off};
		if (!nowait) {
			Py_ssize_t before = *written;
			int err = write_all(fd, &v, 1, pos, written);
			c->carry_off += (size_t)(*written - before);
			if (err != 0)
				return err;
			continue;
		}
		ssize_t done = pwritev2(fd, &v, 1, -1, RWF_NOWAIT);
		if (done < 0)
			return errno == EINTR ? EAGAIN : errno;
		*written += done;
		c->carry_off += (size_t)done;
		if (c->carry_off < c->carry_len)
			return EAGAIN;
	}
	c->carry_off = c->carry_len = 0;
	return 0;
}

/* The frames ready at the head of the ring that go as plain packet blocks, written to fd
 * (see Core.write; pos NULL: writev() at the descriptor's offset): 0, or the errno of a
 * failed write. Adds to *frames and *written; *left: take() has frames to hand over now.
 * With nowait (a loop's write, pos NULL): writes that never wait, and a failed one
 * leaves its frames in the ring (EAGAIN: the descriptor was not ready); what a
 * short one leaves goes to the carry. Called without the interpreter lock, with the
 * writer's lock held and c->stage allocated (stage_ready). */
static int write_ready(Core *c, int fd, long long *pos, Py_ssize_t limit, uint64_t *frames,
		       Py_ssize_t *written, int *left, int nowait)
{
	uint64_t head, i;
	int err = 0;
	*left = 0;
	err = write_carry(c, fd, pos, written, nowait);
	if (err != 0)
		return err;
	pthread_mutex_lock(&c->lock);
	head = c->head;
	pthread_mutex_unlock(&c->lock);
	if (pos != NULL && limit > 0) {
		Py_ssize_t total = 0;
		for (i = c->tail; i < head && total < limit; i++) {
			Slot *s = &c->slots[i % c->nslots];
			int state = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
			if (state == FILLING || !writable(c, s, state))
				break;
			total += block_size(c, s);
		}
		if (total >= limit) {
			*left = 1;
			return 0;
		}
	}
	i = c->tail;
	int more = 1;
	while (more && err == 0) {
		/* one call's worth: whole blocks, parts gathered in the stage or pointed at */
		struct iovec *iov = c->iov;
		int n = 0;
		Py_ssize_t fill = 0;
		size_t bytes = 0; /* the call's, its blocks whole */
		uint64_t start = i;
		char *stage = c->stage;
		for (; i < head; i++) {
			Slot *s = &c->slots[i % c->nslots];
			int state = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
			if (state == FILLING || !writable(c, s, state)) {
				/* (a reply whose write has not returned is written next time) */
				*left = state == READY;
				more = 0;
				break;
			}
			Py_ssize_t cap = s->len;
			if (c->snaplen > 0 && cap > c->snaplen)
				cap = c->snaplen;
			Py_ssize_t size = block_size(c, s);
			int joined = cap <= WRITE_JOIN_MAX;
			Py_ssize_t need = joined ? size : size - cap;
			if (n + 3 > WRITE_IOV || fill + need > WRITE_STAGE)
				break; /* this call is full */
			const char *data = s->buf >= 0 ? c->addr[s->buf] : arena_at(c, s->arena_pos);
			char *p = stage + fill;
			uint32_t total = (uint32_t)size;
			uint32_t hd[7] = {c->block_type, total, 0, (uint32_t)(s->t_ns >> 32),
					  (uint32_t)(s->t_ns & 0xffffffffu), (uint32_t)cap,
					  (uint32_t)s->len};
			PyObject *opts = c->block_opts[s->dir];
			Py_ssize_t pad = (4 - cap % 4) % 4, olen = PyBytes_GET_SIZE(opts);
			memcpy(p, hd, sizeof hd);
			if (joined) {
				memcpy(p + 28, data, cap);
				p += 28 + cap;
			} else {
				p += 28;
			}
			memset(p, 0, pad);
			memcpy(p + pad, PyBytes_AS_STRING(opts), olen);
			memcpy(p + pad + olen, &total, 4);
			if (joined) {
				if (n > 0 && (char *)iov[n - 1].iov_base + iov[n - 1].iov_len == stage + fill)
					iov[n - 1].iov_len += size;
				else
					iov[n++] = (struct iovec){stage + fill, (size_t)size};
			} else {
				if (n > 0 && (char *)iov[n - 1].iov_base + iov[n - 1].iov_len == stage + fill)
					iov[n - 1].iov_len += 28;
				else
					iov[n++] = (struct iovec){stage + fill, 28};
				iov[n++] = (struct iovec){(char *)data, (size_t)cap};
				iov[n++] = (struct iovec){stage + fill + 28, (size_t)(pad + olen + 4)};
			}
			fill += need;
			bytes += (size_t)size;
		}
		if (i == start)
			break;
		if (nowait) {
			ssize_t done = pwritev2(fd, c->iov, n, -1, RWF_NOWAIT);
			if (done < 0) /* nothing written: the frames stay in the ring */
				return errno == EINTR ? EAGAIN : errno;
			*written += done;
			if ((size_t)done < bytes) {
				more = 0; /* the descriptor is full */
				err = keep_carry(c, fd, c->iov, n, (size_t)done, written);
			}
		} else {
			err = write_all(fd, c->iov, n, pos, written);
		}
		/* the slots written (or dropped with a failed call) are free */
		pthread_mutex_lock(&c->lock);
		for (uint64_t j = start; j < i; j++) {
			Slot *s = &c->slots[j % c->nslots];
			if (s->buf >= 0) {
				int dir = s->buf / c->nbufs;
				if (c->nfree[dir] < c->nbufs)
					c->free_stack[dir][c->nfree[dir]++] = s->buf;
				s->buf = -1;
			}
		}
		c->tail = i;
		c->arena_tail = c->slots[(i - 1) % c->nslots].arena_end;
		if (c->waiting)
			pthread_cond_broadcast(&c->space);
		pthread_mutex_unlock(&c->lock);
		if (err == 0) {
			*frames += i - start;
			c->encoded += i - start;
		}
	}
	return err;
}

/* A loop, after it forwarded a large frame: while the capture thread pumps to a
 * descriptor the loops may write to, writes the frames ready (its own too, when those
 * before it are ready) without waiting, unless someone else is taking from the ring now.
 * A descriptor that refuses such writes (EOPNOTSUPP), or fails, is left to the capture
 * thread from then on (its own write reports the error). */
static void write_inline(Core *c)
{
	if (__atomic_load_n(&c->inline_fd, __ATOMIC_RELAXED) < 0)
		return;
	if (pthread_mutex_trylock(&c->wlock) != 0)
		return;
	if (c->inline_fd >= 0) {
		uint64_t frames = 0;
		Py_ssize_t written = 0;
		int left;
		int err = write_ready(c, c->inline_fd, NULL, 0, &frames, &written, &left, 1);
		c->inlined += frames;
		if (err != 0 && err != EAGAIN)
			__atomic_store_n(&c->inline_fd, INLINE_REFUSED, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&c->wlock);
}

/* Core.write and Core.pump need the stage: allocated once, with the interpreter lock */
static int stage_ready(Core *c)
{
	if (c->stage == NULL) {
		c->stage = PyMem_Malloc(WRITE_STAGE);
		c->iov = PyMem_Malloc(WRITE_IOV * sizeof(struct iovec));
		if (c->stage == NULL || c->iov == NULL) {
			PyErr_NoMemory();
			return -1;
		}
	}
	return 0;
}

static PyObject *written_tuple(uint64_t frames, Py_ssize_t written, int err, int left)
{
	if (err == 0)
		return Py_BuildValue("(KnOi)", (unsigned long long)frames, written, Py_None, left);
	return Py_BuildValue("(Knii)", (unsigned long long)frames, written, err, 1);
}

/* Core.write(fd, pos=-1, limit=0) -> (frames, bytes, errno, left): the capture writer's fast
 * path. The frames ready at the head of the queue that go as plain packet blocks (as
 * take(blocks=True) would hand them over, and lent frames as well) are written to fd in
 * order, without the interpreter lock: with writev() (pos -1: a pipe, or a file at its
 * offset) or pwritev() at pos, whole blocks in each call, the rest of a short write before
 * anything else. Their slots are freed and their lent buffers go back to the loops at
 * once. Stops at the first frame that is not ready, or that needs Python (a comment, a cut
 * frame, a refused reply: take() hands it over); with limit (and pos), writes nothing when
 * the frames ready come to limit bytes or more (the caller writes those its own way).
 * Counted in encoded(). On an error the frames of the failed call are dropped with it.
 * left: whether take() has frames to hand over now (a frame that needs Python, the frames
 * over limit, or an error). */
static PyObject *Core_write(Core *c, PyObject *args)
{
	int fd, err, left;
	long long pos = -1;
	Py_ssize_t limit = 0, written = 0;
	uint64_t frames = 0;
	if (!PyArg_ParseTuple(args, "i|Ln", &fd, &pos, &limit))
		return NULL;
	if (c->block_opts[IN] == NULL)
		return Py_BuildValue("(KnOi)", 0ULL, (Py_ssize_t)0, Py_None, 1);
	if (stage_ready(c) < 0)
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	pthread_mutex_lock(&c->wlock);
	err = write_ready(c, fd, pos >= 0 ? &pos : NULL, limit, &frames, &written, &left, 0);
	pthread_mutex_unlock(&c->wlock);
	Py_END_ALLOW_THREADS
	return written_tuple(frames, written, err, left);
}

/* Core.pump(fd, pos, limit, interval, inline=False) -> (frames, bytes, errno, left):
 * Core.wait and Core.write in turn, without coming back to Python between them: every
 * `interval` seconds (or at once when a loop finds the ring full) the plain frames ready
 * are written as Core.write writes them. Returns when take() has frames to hand over
 * (left), on an error, or when Core.wake was called (before the call, too); the counts are
 * those of the whole call (not the loops' writes). The capture thread's loop while it
 * only writes: a return to Python every few milliseconds costs more than the write
 * itself. A pause in which no frame came ends the pausing: the pump sleeps until the next
 * frame (reserve wakes it), and its next pause starts then; an idle recorder does not
 * wake. With inline (and pos -1: a descriptor whose writes can be told not to wait),
 * a loop that forwarded a large frame writes the frames ready itself (write_inline) until
 * the pump returns. */
static PyObject *Core_pump(Core *c, PyObject *args)
{
	int fd, err = 0, left = 0, inl = 0;
	long long pos;
	Py_ssize_t limit, written = 0;
	double interval;
	uint64_t frames = 0;
	if (!PyArg_ParseTuple(args, "iLnd|p", &fd, &pos, &limit, &interval, &inl))
		return NULL;
	if (c->block_opts[IN] == NULL)
		return Py_BuildValue("(KnOi)", 0ULL, (Py_ssize_t)0, Py_None, 1);
	if (stage_ready(c) < 0)
		return NULL;
	long long step = (long long)(interval * 1e9);
	Py_BEGIN_ALLOW_THREADS
	pthread_mutex_lock(&c->wlock);
	if (inl && pos < 0 && c->inline_fd != INLINE_REFUSED)
		__atomic_store_n(&c->inline_fd, fd, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&c->wlock);
	pthread_mutex_lock(&c->lock);
	uint64_t seen = c->head; /* the frames handed over at the last drain */
	pthread_mutex_unlock(&c->lock);
	for (;;) {
		struct timespec until = deadline(step);
		pthread_mutex_lock(&c->lock);
		while (!c->woken && !c->called)
			if (pthread_cond_timedwait(&c->drain, &c->lock, &until) == ETIMEDOUT)
				break;
		int called = c->called;
		c->woken = 0;
		c->called = 0;
		pthread_mutex_unlock(&c->lock);
		if (called)
			break;
		pthread_mutex_lock(&c->wlock);
		err = write_ready(c, fd, pos >= 0 ? &pos : NULL, limit, &frames, &written, &left, 0);
		pthread_mutex_unlock(&c->wlock);
		if (err != 0 || left)
			break;
		/* no frame came in the whole pause, and none is left: sleep until one comes
		 * (reserve ends the doze) rather than every interval */
		pthread_mutex_lock(&c->lock);
		c->drains++;
		if (c->head == seen && c->tail == c->head) {
			c->dozing = 1;
			while (c->dozing && !c->woken && !c->called)
				pthread_cond_wait(&c->drain, &c->lock);
			c->dozing = 0;
		}
		seen = c->head;
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_lock(&c->wlock);
	if (c->inline_fd >= 0)
		__atomic_store_n(&c->inline_fd, -1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&c->wlock);
	Py_END_ALLOW_THREADS
	return written_tuple(frames, written, err, left);
}

/* Core.wait(timeout): the capture thread's pause between drains, without the interpreter
 * lock and without Python's own timed waits (a Condition and a fresh lock each time);
 * True when Core.wake ended it early. */
static PyObject *Core_wait(Core *c, PyObject *args)
{
	double timeout;
	int woken;
	if (!PyArg_ParseTuple(args, "d", &timeout))
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	struct timespec until = deadline((long long)(timeout * 1e9));
	pthread_mutex_lock(&c->lock);
	while (!c->woken)
		if (pthread_cond_timedwait(&c->drain, &c->lock, &until) == ETIMEDOUT)
			break;
	woken = c->woken;
	c->woken = 0;
	c->called = 0;
	pthread_mutex_unlock(&c->lock);
	Py_END_ALLOW_THREADS
	return PyBool_FromLong(woken);
}

static PyObject *Core_wake(Core *c, PyObject *Py_UNUSED(ignored))
{
	pthread_mutex_lock(&c->lock);
	c->woken = 1;
	c->called = 1;
	pthread_cond_signal(&c->drain);
	pthread_mutex_unlock(&c->lock);
	Py_RETURN_NONE;
}

static PyObject *Core_set_blocks(Core *c, PyObject *args)
{
	PyObject *type, *opts_in, *opts_out;
	Py_ssize_t snaplen;
	if (!PyArg_ParseTuple(args, "SSOn", &type, &opts_in, &opts_out, &snaplen))
		return NULL;
	if (PyBytes_GET_SIZE(type) != 4 || (opts_out != Py_None && !PyBytes_Check(opts_out))) {
		PyErr_SetString(PyExc_ValueError, "set_blocks(type: 4 bytes, opts, opts|None, snaplen)");
		return NULL;
	}
	memcpy(&c->block_type, PyBytes_AS_STRING(type), 4);
	Py_XSETREF(c->block_opts[IN], Py_NewRef(opts_in));
	Py_XSETREF(c->block_opts[OUT], opts_out == Py_None ? NULL : Py_NewRef(opts_out));
	c->snaplen = snaplen;
	Py_RETURN_NONE;
}

/* Core.set_lend_wake(nbytes): how many bytes of large frames a loop lends before it wakes
 * the capture thread (0: only once it has lent half its buffers) */
static PyObject *Core_set_lend_wake(Core *c, PyObject *args)
{
	unsigned long long n;
	if (!PyArg_ParseTuple(args, "K", &n))
		return NULL;
	pthread_mutex_lock(&c->lock);
	c->lend_wake = n;
	pthread_mutex_unlock(&c->lock);
	Py_RETURN_NONE;
}

static PyObject *Core_give(Core *c, PyObject *args)
{
	int b;
	if (!PyArg_ParseTuple(args, "i", &b))
		return NULL;
	if (b < 0 || b >= 2 * c->nbufs) {
		PyErr_SetString(PyExc_ValueError, "no such buffer");
		return NULL;
	}
	put_free(c, b);
	Py_RETURN_NONE;
}

static PyObject *Core_encoded(Core *c, PyObject *Py_UNUSED(ignored))
{
	return PyLong_FromUnsignedLongLong(c->encoded);
}

static PyObject *Core_handed(Core *c, PyObject *Py_UNUSED(ignored))
{
	uint64_t head;
	pthread_mutex_lock(&c->lock);
	head = c->head;
	pthread_mutex_unlock(&c->lock);
	return PyLong_FromUnsignedLongLong(head);
}

static PyObject *Core_discard(Core *c, PyObject *Py_UNUSED(ignored))
{
	pthread_mutex_lock(&c->lock);
	c->discard = 1;
	pthread_cond_broadcast(&c->space);
	pthread_mutex_unlock(&c->lock);
	Py_RETURN_NONE;
}

static PyObject *Core_stats(Core *c, PyObject *Py_UNUSED(ignored))
{
	PyObject *refused = PyDict_New();
	if (refused == NULL)
		return NULL;
	for (int e = 0; e < NERRNO; e++) {
		if (c->refused[e] == 0)
			continue;
		PyObject *k = PyLong_FromLong(e), *v = PyLong_FromUnsignedLongLong(c->refused[e]);
		if (k == NULL || v == NULL || PyDict_SetItem(refused, k, v) < 0) {
			Py_XDECREF(k);
			Py_XDECREF(v);
			Py_DECREF(refused);
			return NULL;
		}
		Py_DECREF(k);
		Py_DECREF(v);
	}
	return Py_BuildValue("{sKsKsKsKsKsKsKsKsN}", "inbound", (unsigned long long)c->inbound,
			     "outbound", (unsigned long long)c->outbound, "joined",
			     (unsigned long long)c->joined, "waits", (unsigned long long)c->waits,
			     "lent", (unsigned long long)(c->lent_in + c->lent_out), "inline",
			     (unsigned long long)c->inlined, "carried",
			     (unsigned long long)c->carried, "drains", (unsigned long long)c->drains,
			     "refused", refused);
}

static void Core_dealloc(Core *c)
{
	if (c->slots != NULL) {
		for (uint64_t i = 0; i < c->nslots; i++) {
			Py_XDECREF(c->slots[i].obj);
			Py_XDECREF(c->slots[i].comment);
		}
		PyMem_Free(c->slots);
	}
	if (c->held != NULL) {
		for (int i = 0; i < 2 * c->nbufs; i++)
			if (c->held[i].obj != NULL)
				PyBuffer_Release(&c->held[i]);
		PyMem_Free(c->held);
	}
	PyMem_Free(c->addr);
	PyMem_Free(c->free_stack[0]);
	PyMem_Free(c->free_stack[1]);
	PyMem_Free(c->arena);
	PyMem_Free(c->stage);
	PyMem_Free(c->iov);
	Py_XDECREF(c->views);
	Py_XDECREF(c->on_request);
	Py_XDECREF(c->on_init_reply);
	Py_XDECREF(c->dirs[0]);
	Py_XDECREF(c->dirs[1]);
	Py_XDECREF(c->block_opts[0]);
	Py_XDECREF(c->block_opts[1]);
	free(c->carry);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->wlock);
	pthread_cond_destroy(&c->space);
	pthread_cond_destroy(&c->drain);
	Py_TYPE(c)->tp_free((PyObject *)c);
}

static int Core_init(Core *c, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"devfd", "sockfd", "buffers", "directions", "on_request",
				 "on_init_reply", "lend_min", "slots", "arena", NULL};
	PyObject *buffers, *dirs, *on_request, *on_init_reply;
	Py_ssize_t lend_min, slots = 1 << 14, arena = 16 << 20;
	if (c->slots != NULL) {
		PyErr_SetString(PyExc_RuntimeError, "Core is set up once");
		return -1;
	}
	if (!PyArg_ParseTupleAndKeywords(args, kwds, "iiOOOOn|nn", kwlist, &c->devfd, &c->sockfd,
					 &buffers, &dirs, &on_request, &on_init_reply, &lend_min,
					 &slots, &arena))
		return -1;
	if (!PyList_Check(buffers) || PyList_GET_SIZE(buffers) < 2 ||
	    PyList_GET_SIZE(buffers) % 2) {
		PyErr_SetString(PyExc_ValueError, "buffers: an even number of buffers, two at least");
		return -1;
	}
	if (!PyTuple_Check(dirs) || PyTuple_GET_SIZE(dirs) != 2) {
		PyErr_SetString(PyExc_ValueError, "directions: (inbound, outbound)");
		return -1;
	}
	Py_ssize_t nb = PyList_GET_SIZE(buffers);
	c->nbufs = (int)(nb / 2);
	c->lend_wake = LEND_WAKE;
	c->lend_min = lend_min;
	c->held = PyMem_Calloc(nb, sizeof(Py_buffer));
	c->addr = PyMem_Calloc(nb, sizeof(char *));
	c->free_stack[0] = PyMem_Calloc(c->nbufs, sizeof(int));
	c->free_stack[1] = PyMem_Calloc(c->nbufs, sizeof(int));
	c->views = PyTuple_New(nb);
	if (!c->held || !c->addr || !c->free_stack[0] || !c->free_stack[1] || !c->views) {
		PyErr_NoMemory();
		return -1;
	}
	for (Py_ssize_t i = 0; i < nb; i++) {
		PyObject *b = PyList_GET_ITEM(buffers, i);
		if (PyObject_GetBuffer(b, &c->held[i], PyBUF_WRITABLE) < 0)
			return -1;
		if (i == 0)
			c->bufsize = c->held[i].len;
		else if (c->held[i].len != c->bufsize) {
			PyErr_SetString(PyExc_ValueError, "buffers of different sizes");
			return -1;
		}
		c->addr[i] = c->held[i].buf;
		PyObject *v = PyMemoryView_FromObject(b);
		if (v == NULL)
			return -1;
		PyTuple_SET_ITEM(c->views, i, v);
		int dir = (int)(i / c->nbufs);
		/* pushed in reverse: the first buffers are taken first (and reused most) */
		c->free_stack[dir][c->nbufs - 1 - (i % c->nbufs)] = (int)i;
	}
	c->nfree[0] = c->nfree[1] = c->nbufs;
	if (slots < 2 || arena < 2 * c->bufsize) {
		PyErr_SetString(PyExc_ValueError, "the ring is too small (arena: two frames at least)");
		return -1;
	}
	c->nslots = (uint64_t)slots;
	c->arena_size = (uint64_t)arena;
	c->arena = PyMem_Malloc(arena);
	c->slots = PyMem_Calloc(slots, sizeof(Slot));
	if (!c->arena || !c->slots) {
		PyErr_NoMemory();
		return -1;
	}
	Py_INCREF(on_request);
	Py_INCREF(on_init_reply);
	c->on_request = on_request;
	c->on_init_reply = on_init_reply;
	for (int d = 0; d < 2; d++) {
		c->dirs[d] = PyTuple_GET_ITEM(dirs, d);
		Py_INCREF(c->dirs[d]);
	}
	return 0;
}

static PyObject *Core_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	Core *c = (Core *)type->tp_alloc(type, 0);
	(void)args;
	(void)kwds;
	if (c == NULL)
		return NULL;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->wlock, NULL);
	c->inline_fd = -1;
	pthread_cond_init(&c->space, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&c->drain, &attr);
	pthread_condattr_destroy(&attr);
	return (PyObject *)c;
}

static PyMethodDef Core_methods[] = {
	{"run_k2d", (PyCFunction)Core_run_k2d, METH_NOARGS,
	 "Forward kernel -> daemon until the end; returns (reason, detail)."},
	{"run_d2k", (PyCFunction)Core_run_d2k, METH_NOARGS,
	 "Forward daemon -> kernel until the end; returns (reason, detail)."},
	{"take", (PyCFunction)Core_take, METH_VARARGS,
	 "take(final=False): the frames ready, in order, as "
	 "(direction, t_ns, data, comment, result)."},
	{"set_blocks", (PyCFunction)Core_set_blocks, METH_VARARGS,
	 "set_blocks(type, opts_in, opts_out, snaplen): how take(blocks=True) encodes."},
	{"write", (PyCFunction)Core_write, METH_VARARGS,
	 "write(fd, pos=-1, limit=0): write the plain frames ready as packet blocks; "
	 "(frames, bytes, errno or None, left for take)."},
	{"pump", (PyCFunction)Core_pump, METH_VARARGS,
	 "pump(fd, pos, limit, interval, inline=False): wait and write in turn until take() "
	 "has frames, an error, or wake(); with inline, the loops write large frames "
	 "themselves meanwhile; (frames, bytes, errno or None, left for take)."},
	{"wait", (PyCFunction)Core_wait, METH_VARARGS,
	 "wait(timeout): pause without the GIL; True when wake() ended it early."},
	{"wake", (PyCFunction)Core_wake, METH_NOARGS,
	 "End a wait() or pump() now (or the next one)."},
	{"give", (PyCFunction)Core_give, METH_VARARGS, "give(index): a lent buffer comes back."},
	{"set_lend_wake", (PyCFunction)Core_set_lend_wake, METH_VARARGS,
	 "set_lend_wake(nbytes): lent bytes that wake the capture thread (0: half the buffers)."},
	{"encoded", (PyCFunction)Core_encoded, METH_NOARGS,
	 "How many frames take() has handed over as packet blocks so far."},
	{"handed", (PyCFunction)Core_handed, METH_NOARGS,
	 "How many frames the loops have handed over so far (taken or not)."},
	{"discard", (PyCFunction)Core_discard, METH_NOARGS,
	 "The capture failed: drop frames from now on instead of waiting for room."},
	{"stats", (PyCFunction)Core_stats, METH_NOARGS, "Counters of the loops."},
	{NULL, NULL, 0, NULL},
};

static PyTypeObject CoreType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "fusetrace.proxy._core.Core",
	.tp_basicsize = sizeof(Core),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "The forwarding loops and the capture ring (see fusetrace/proxy/core.py).",
	.tp_new = Core_new,
	.tp_init = (initproc)Core_init,
	.tp_dealloc = (destructor)Core_dealloc,
	.tp_methods = Core_methods,
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "_core", "fusetrace's compiled forwarding core.", -1, NULL,
	NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__core(void)
{
	PyObject *m;
	if (PyType_Ready(&CoreType) < 0)
		return NULL;
	m = PyModule_Create(&module);
	if (m == NULL)
		return NULL;
	Py_INCREF(&CoreType);
	if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0) {
		Py_DECREF(&CoreType);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
