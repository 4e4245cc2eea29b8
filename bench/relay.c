/*
 * The least any /dev/fuse proxy can cost: a relay with nothing but the forwarding.
 *
 * bench_record.py compiles this (with cc, when there is one) and mounts the daemon behind
 * it as the "relay" configuration. It does what `fusetrace record` does on its forwarding
 * path, in C and without capturing anything: one thread reads requests from /dev/fuse and
 * sends them to the daemon's end of a SOCK_SEQPACKET socketpair, another receives the
 * daemon's replies (joining a reply that a spliced write split into several messages) and
 * writes them to /dev/fuse. The gap between native and relay is what interposition itself
 * costs on the machine (two more thread hand-offs per request, two more copies per reply);
 * the gap between relay and recorded is fusetrace's own.
 *
 *     relay MOUNTPOINT DAEMON [ARG...]     ("{}" in the daemon's arguments: /dev/fd/N)
 *
 * RELAY_BUFFERS=N in the environment makes the reply loop receive into N buffers in turn
 * rather than into one: a relay that touches as much memory per reply as a proxy that
 * keeps its last N replies for a while (fusetrace lends them to its capture thread).
 *
 * A measuring aid, not a tool: no option parsing, no INIT rewriting, no clean-up beyond
 * ending when the filesystem is unmounted or the daemon closes its socket.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define FRAME_MAX (2 << 20)
#define SOCKBUF (8 << 20)

static int devfd, sock;

static void *kernel_to_daemon(void *unused)
{
	char *buf = aligned_alloc(4096, FRAME_MAX);
	(void)unused;
	for (;;) {
		ssize_t n = read(devfd, buf, FRAME_MAX);
		if (n < 0) {
			if (errno == ENOENT || errno == EINTR)
				continue; /* interrupted before it was read */
			break;        /* ENODEV: unmounted */
		}
		if (send(sock, buf, n, 0) < 0)
			break;
	}
	shutdown(sock, SHUT_RDWR);
	return NULL;
}

static void *daemon_to_kernel(void *unused)
{
	const char *env = getenv("RELAY_BUFFERS");
	int nbufs = env && atoi(env) > 0 ? atoi(env) : 1;
	char **bufs = calloc(nbufs, sizeof *bufs);
	(void)unused;
	for (int i = 0; i < nbufs; i++)
		bufs[i] = aligned_alloc(4096, FRAME_MAX);
	for (unsigned turn = 0;; turn++) {
		char *buf = bufs[turn % nbufs];
		ssize_t n = recv(sock, buf, FRAME_MAX, 0);
		uint32_t len;
		if (n <= 0)
			break;
		memcpy(&len, buf, sizeof len);
		while (n >= 16 && n < len && len <= FRAME_MAX) {
			ssize_t more = recv(sock, buf + n, FRAME_MAX - n, 0);
			if (more <= 0)
				return NULL;
			n += more;
		}
		if (write(devfd, buf, n) < 0 && errno == ENODEV)
			break;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char opts[128], path[32];
	int sv[2], size = SOCKBUF;
	pthread_t k2d, d2k;
	pid_t pid;

	if (argc < 3) {
		fprintf(stderr, "usage: relay MOUNTPOINT DAEMON [ARG...]\n");
		return 2;
	}
	devfd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (devfd < 0) {
		perror("relay: /dev/fuse");
		return 1;
	}
	snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other",
		 devfd);
	if (mount("relay", argv[1], "fuse.relay", MS_NOSUID | MS_NODEV, opts) < 0) {
		perror("relay: mount");
		return 1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("relay: socketpair");
		return 1;
	}
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
		setsockopt(sv[i], SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
	}
	sock = sv[0];
	pid = fork();
	if (pid == 0) {
		snprintf(path, sizeof path, "/dev/fd/%d", dup(sv[1])); /* dup: no CLOEXEC */
		for (int i = 2; i < argc; i++)
			if (strcmp(argv[i], "{}") == 0)
				argv[i] = path;
		execvp(argv[2], argv + 2);
		perror("relay: exec");
		_exit(127);
	}
	close(sv[1]);
	pthread_create(&k2d, NULL, kernel_to_daemon, NULL);
	pthread_create(&d2k, NULL, daemon_to_kernel, NULL);
	pthread_join(d2k, NULL);
	waitpid(pid, NULL, 0);
	return 0;
}
