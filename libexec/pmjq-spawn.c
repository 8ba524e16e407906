/*
 * pmjq-spawn: starts pmjq's job processes (pmjq(1), THE JOB PROCESS).
 *
 * Why a helper: Node's spawn forks the whole daemon (its page tables, then
 * copy-on-write faults) and waits, blocked, until the job has exec'd; at
 * thousands of jobs a second that was half the daemon's time. This process
 * is small, so its fork is cheap, and the daemon does not wait for it. It is
 * C, built at install (scripts/build-helper.sh), because the fork is where a
 * job's start spends its time: a Perl helper cost the jobs 1 ms each, this
 * one a tenth of that.
 *
 * Input (stdin), from the daemon:
 *   LEN\n and LEN bytes: a job to start, its fields separated by NUL bytes:
 *     AFTER DEADLINE SOCKET TOKEN LOG OUT CWD UID GID GROUPS ARGC ARGV... ENVC NAME=VALUE...
 *     AFTER: "-", or the token of a job still running whose slot this one
 *     takes: it is held here and started the moment that job is reaped (a
 *     standby: the next job starts without waiting for the daemon to hear of
 *     the end); DEADLINE: 0, or the CLOCK_MONOTONIC millisecond after which
 *     it is not started at all ("failed TOKEN 0 expired"): a job held past
 *     it goes back to the daemon, and none starts after the node's fencing
 *     time (the daemon's watchdog no longer watches for it then)
 *     OUT: "log" (stdout and stderr appended to LOG) or "lines" (each to its
 *     own connection to the daemon's socket SOCKET, made here before the
 *     fork, named by a first line "TOKEN FD"); UID, GID and GROUPS (the
 *     supplementary groups, separated by commas) "-": stay who we are
 *   w TOKEN LEN\n and LEN bytes: for the job's fd 4
 *   r TOKEN\n: the daemon takes another chunk of the job's fd 3
 *   c TOKEN\n: the daemon is done with the job's fd 3 and fd 4
 *   x TOKEN\n: a held job is not to start ("failed TOKEN 0 cancelled"); one
 *     started already goes on (the daemon hears "started")
 * Output (stdout), after a first line "ready VERSION" (PROTOCOL below: the
 * daemon refuses a helper built from another version of this file):
 *   started TOKEN PID | failed TOKEN ERRNO STEP | exit TOKEN WAITSTATUS GROUP
 *     GROUP: 1 if the job's process group still has members once it is
 *     reaped (what it left running), 0 if not: an empty group is gone for
 *     good, and its id may be another's soon, so the daemon signals it only
 *     when 1
 *   d TOKEN LEN\n and LEN bytes: what the job wrote to fd 3 (one chunk; the
 *     next after an "r": a job flooding fd 3 is held back by its pipe)
 *   e TOKEN: the job closed fd 3 (or fd 4) after writing to fd 3: its
 *     commands are over (not said for a job that wrote none: no message)
 *   u TOKEN: the job left more than MAX_UNREAD bytes (our argument) of
 *     answers unread on fd 4: its fd 3 and fd 4 are closed
 * The job's fd 3 and fd 4 are pipes of ours, each its own, so that a job
 * closing fd 3 is seen as the end of its commands. They are closed when the
 * job is reaped: its commands end with it.
 *
 * Only libc; the daemon is trusted, a job's bytes are only ever passed on,
 * framed by their length.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* what the requests and reports below are: spawner.ts HELPER_PROTOCOL, raised with any change to them */
#define PROTOCOL 3

/* supplementary groups a job can have: Linux's NGROUPS_MAX */
#define NGROUPS_MAX_HERE 65536

/* One job, from its start until it is reaped. */
struct job {
	pid_t pid;
	char *token;
	int why_r;      /* the child says on it why it could not exec (EOF: it did); -1 once told */
	int r3, w4;     /* our ends of its fd 3 and fd 4; -1 once closed (w4 >= 0: its channel is open) */
	int credit;     /* the daemon takes the next chunk of fd 3 */
	int said;       /* a chunk of fd 3 was passed on: its end is told */
	char *out;      /* answers for fd 4 its pipe has not taken yet */
	size_t out_len;
	int gone;       /* reaped or failed: freed at the top of the loop */
};

static struct job **jobs;
static size_t njobs, jobs_cap;

/* A request held until the job whose slot it takes is reaped (AFTER), or its DEADLINE. */
struct held {
	char *req;      /* the request, from SOCKET on */
	size_t len;
	char *token, *after;
	long long deadline; /* CLOCK_MONOTONIC ms; 0: none */
};

static struct held **held;
static size_t nheld, held_cap;
static size_t max_unread;
static int devnull;

/* realloc, or exit saying so */
static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p) {
		fputs("pmjq-spawn: out of memory\n", stderr);
		exit(1);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xrealloc(NULL, n), s, n);
}

/* All of it, however many writes it takes: the daemon reads everything we say. */
static void put(const char *data, size_t len)
{
	while (len) {
		ssize_t n = write(1, data, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			exit(0); /* the daemon is gone */
		}
		data += n;
		len -= (size_t)n;
	}
}

static void report(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line - 1)
		n = sizeof line - 2;
	line[n++] = '\n';
	put(line, (size_t)n);
}

static struct job *by_token(const char *token, size_t len)
{
	for (size_t i = 0; i < njobs; i++)
		if (!jobs[i]->gone && strlen(jobs[i]->token) == len && !memcmp(jobs[i]->token, token, len))
			return jobs[i];
	return NULL;
}

static struct job *by_pid(pid_t pid)
{
	for (size_t i = 0; i < njobs; i++)
		if (!jobs[i]->gone && jobs[i]->pid == pid)
			return jobs[i];
	return NULL;
}

/*
 * Done with a job's fd 3 and 4: what its pipe takes of the answers not yet
 * written goes (the last answer before a "c"), the rest is dropped.
 */
static void close_chan(struct job *j)
{
	if (j->w4 < 0)
		return;
	if (j->out_len)
		(void)!write(j->w4, j->out, j->out_len);
	free(j->out);
	j->out = NULL;
	j->out_len = 0;
	if (j->r3 >= 0)
		close(j->r3);
	close(j->w4);
	j->r3 = j->w4 = -1;
}

/*
 * A chunk the job wrote to fd 3, for the daemon. At EOF its commands are
 * over, but the answers to the last of them may still be on their way: fd 4
 * stays open until the daemon says "c".
 */
static void from_job(struct job *j)
{
	static char buf[65536];
	char head[256];
	ssize_t got = read(j->r3, buf, sizeof buf);
	if (got < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (got > 0) {
		j->credit = 0;
		j->said = 1;
		int n = snprintf(head, sizeof head, "d %s %zd\n", j->token, got);
		put(head, (size_t)n);
		put(buf, (size_t)got);
		return;
	}
	if (j->said)
		report("e %s", j->token);
	close(j->r3);
	j->r3 = -1;
}

/* Answers for the job's fd 4, as much as its pipe takes; a job that closed fd 4 has ended its commands too. */
static void to_job(struct job *j)
{
	ssize_t n = write(j->w4, j->out, j->out_len);
	if (n >= 0) {
		memmove(j->out, j->out + n, j->out_len - (size_t)n);
		j->out_len -= (size_t)n;
		return;
	}
	if (errno == EINTR || errno == EAGAIN)
		return;
	report("e %s", j->token);
	close_chan(j);
}

static void release_held(const char *after);

/* The child of a job has exec'd (EOF on its pipe) or says why it could not. */
static void execd(struct job *j)
{
	char why[64];
	ssize_t n;
	while ((n = read(j->why_r, why, sizeof why - 1)) < 0 && errno == EINTR)
		;
	close(j->why_r);
	j->why_r = -1;
	if (n <= 0) {
		report("started %s %d", j->token, (int)j->pid);
		return;
	}
	why[n] = 0;
	close_chan(j);
	report("failed %s %s", j->token, why);
	j->gone = 1;
	release_held(j->token);
	while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR) /* it ends at once (unless reaped already) */
		;
}

static void reap(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct job *j = by_pid(pid);
		if (!j)
			continue;
		if (j->why_r >= 0) {
			execd(j); /* its start is told first */
			if (j->gone)
				continue;
		}
		close_chan(j); /* its commands end with it */
		/* (EPERM: a member we may not signal, a set-uid program: still there) */
		int left = kill(-pid, 0) == 0 || errno == EPERM;
		report("exit %s %d %d", j->token, status, left);
		j->gone = 1;
		release_held(j->token); /* its slot is free: the job held for it starts now */
	}
}

static int connect_daemon(const char *socket_path, const char *token, int fd)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char line[256];
	if (strlen(socket_path) >= sizeof a.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(a.sun_path, socket_path);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	int n = snprintf(line, sizeof line, "%s %d\n", token, fd);
	if (connect(s, (struct sockaddr *)&a, sizeof a) < 0 || write(s, line, (size_t)n) != n) {
		int e = errno;
		close(s);
		errno = e;
		return -1;
	}
	return s;
}

static int by_gid(const void *a, const void *b)
{
	gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;
	return (x > y) - (x < y);
}

/* The groups asked for are those we have (the kernel keeps them sorted). */
static int same_groups(gid_t *want, int n, gid_t *have, int m)
{
	if (n != m)
		return 0;
	qsort(want, (size_t)n, sizeof *want, by_gid);
	qsort(have, (size_t)m, sizeof *have, by_gid);
	return memcmp(want, have, (size_t)n * sizeof *want) == 0;
}

/*
 * In the child: its own session, descriptors 0-4 and nothing else, its
 * owner's ids, then exec. Any failure is told to the helper as "ERRNO STEP".
 */
static void child(int why_w, const int conn[5], const char *log, int lines, const char *cwd,
		  const char *uid, const char *gid, const char *groups, char **argv, char **envp)
{
	const char *step = "setsid";
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGCHLD, SIG_DFL);
	if (setsid() < 0)
		goto fail;
	int o = -1;
	if (!lines) {
		step = "log";
		o = open(log, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (o < 0)
			goto fail;
	}
	step = "dup2";
	/* (every source is above 9: fds 3-9 are held, so no dup2 overwrites another) */
	int from[5] = { devnull, lines ? conn[1] : o, lines ? conn[2] : o, conn[3], conn[4] };
	for (int i = 0; i < 5; i++)
		if (dup2(from[i], i) < 0)
			goto fail;
	step = "chdir";
	if (chdir(cwd) < 0)
		goto fail;
	if (strcmp(uid, "-") != 0) {
		uid_t u = (uid_t)strtoul(uid, NULL, 10);
		gid_t g = (gid_t)strtoul(gid, NULL, 10);
		gid_t list[NGROUPS_MAX_HERE], got[NGROUPS_MAX_HERE];
		int n = 0;
		step = "setgid";
		for (char *p = (char *)groups, *end; *p && n < NGROUPS_MAX_HERE; p = end + (*end == ',')) {
			list[n++] = (gid_t)strtoul(p, &end, 10);
			if (end == p) {
				errno = EINVAL;
				goto fail;
			}
		}
		if (setgroups((size_t)n, list) < 0 || setgid(g) < 0)
			goto fail;
		step = "setuid";
		if (setuid(u) < 0)
			goto fail;
		/* the owner's, all of them, and no way back */
		if (getuid() != u || geteuid() != u || getgid() != g || getegid() != g ||
		    !same_groups(list, n, got, getgroups(NGROUPS_MAX_HERE, got)) ||
		    (u != 0 && setuid(0) == 0)) {
			errno = EPERM;
			goto fail;
		}
	}
	step = "exec";
	environ = envp; /* (execvp looks a name without a slash up in the job's PATH) */
	execvp(argv[0], argv);
fail:
	dprintf(why_w, "%d %s", errno, step);
	_exit(127);
}

/* A request: SOCKET TOKEN LOG OUT CWD UID GID GROUPS ARGC ARGV... ENVC NAME=VALUE... */
static void start(const char *request, size_t len)
{
	char *req = xrealloc(NULL, len + 1); /* (its last field ends with it: a NUL after it) */
	memcpy(req, request, len);
	req[len] = 0;
	size_t nf = 1;
	for (size_t i = 0; i < len; i++)
		nf += req[i] == 0;
	char **f = xrealloc(NULL, (nf + 1) * sizeof *f);
	f[0] = req;
	for (size_t i = 0, k = 1; i < len; i++)
		if (req[i] == 0)
			f[k++] = req + i + 1;
	f[nf] = NULL;
	if (nf < 11) {
		fputs("pmjq-spawn: a request with too few fields\n", stderr);
		exit(1);
	}
	const char *socket_path = f[0], *token = f[1], *log = f[2], *cwd = f[4], *uid = f[5], *gid = f[6], *groups = f[7];
	int lines = strcmp(f[3], "lines") == 0;
	size_t argc = strtoul(f[8], NULL, 10);
	if (argc < 1 || 9 + argc + 1 > nf) {
		fputs("pmjq-spawn: a request with a bad ARGC\n", stderr);
		exit(1);
	}
	char **argv = f + 9;
	char **envp = f + 9 + argc + 1; /* (after ENVC: the rest, up to the NULL) */
	int conn[5] = { -1, -1, -1, -1, -1 };
	int p3[2] = { -1, -1 }, p4[2] = { -1, -1 }, why[2] = { -1, -1 };
	const char *step = "pipe";
	if (lines) {
		step = "connect";
		if ((conn[1] = connect_daemon(socket_path, token, 1)) < 0 ||
		    (conn[2] = connect_daemon(socket_path, token, 2)) < 0)
			goto fail;
		step = "pipe";
	}
	/* fd 3 and 4; and the pipe on which the child tells why it could not exec (EOF: it did) */
	if (pipe2(p3, O_CLOEXEC) < 0 || pipe2(p4, O_CLOEXEC) < 0 || pipe2(why, O_CLOEXEC) < 0)
		goto fail;
	conn[3] = p3[1];
	conn[4] = p4[0];
	/* (never blocked by one job: a job not reading fd 4 only fills its own queue) */
	fcntl(p4[1], F_SETFL, fcntl(p4[1], F_GETFL) | O_NONBLOCK);
	fcntl(p3[0], F_SETFL, fcntl(p3[0], F_GETFL) | O_NONBLOCK);
	argv[argc] = NULL; /* (over ENVC, read no more) */
	step = "fork";
	pid_t pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0)
		child(why[1], conn, log, lines, cwd, uid, gid, groups, argv, envp);
	close(why[1]);
	for (int i = 1; i < 5; i++)
		if (conn[i] >= 0)
			close(conn[i]);
	struct job *j = xrealloc(NULL, sizeof *j);
	*j = (struct job){ .pid = pid, .token = xstrdup(token), .why_r = why[0], .r3 = p3[0], .w4 = p4[1],
			   /* the first chunk of fd 3 is the daemon's unasked: a job that never writes a command costs no message */
			   .credit = 1 };
	if (njobs == jobs_cap)
		jobs = xrealloc(jobs, (jobs_cap = jobs_cap ? 2 * jobs_cap : 16) * sizeof *jobs);
	jobs[njobs++] = j;
	free(f);
	free(req);
	return;
fail:;
	int e = errno;
	report("failed %s %d %s", token, e, step);
	int fds[] = { conn[1], conn[2], p3[0], p3[1], p4[0], p4[1], why[0], why[1] };
	for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(f);
	free(req);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Start it, unless its deadline has passed. */
static void start_by(const char *req, size_t len, const char *token, long long deadline)
{
	if (deadline && now_ms() >= deadline)
		report("failed %s 0 expired", token);
	else
		start(req, len);
}

static void drop_held(size_t i)
{
	free(held[i]->req);
	free(held[i]->token);
	free(held[i]->after);
	free(held[i]);
	held[i] = held[--nheld];
}

/* The job `after` is reaped (or could not exec): what was held for its slot starts. */
static void release_held(const char *after)
{
	for (size_t i = 0; i < nheld; i++) {
		struct held *h = held[i];
		if (strcmp(h->after, after) != 0)
			continue;
		start_by(h->req, h->len, h->token, h->deadline);
		drop_held(i);
		return; /* (one per slot) */
	}
}

/* The held requests past their deadline go back; returns the ms until the next deadline, -1 if none. */
static long long expire_held(void)
{
	long long now = now_ms(), next = -1;
	for (size_t i = 0; i < nheld;) {
		struct held *h = held[i];
		if (h->deadline && now >= h->deadline) {
			report("failed %s 0 expired", h->token);
			drop_held(i);
			continue;
		}
		if (h->deadline && (next < 0 || h->deadline - now < next))
			next = h->deadline - now;
		i++;
	}
	return next;
}

/* A request as it comes: AFTER DEADLINE, then the fields start() takes (TOKEN the second). */
static void submit(const char *request, size_t len)
{
	const char *end = request + len, *after = request;
	const char *a_end = memchr(after, 0, len);
	const char *deadline = a_end ? a_end + 1 : NULL;
	const char *d_end = deadline ? memchr(deadline, 0, (size_t)(end - deadline)) : NULL;
	const char *rest = d_end ? d_end + 1 : NULL;
	const char *s_end = rest ? memchr(rest, 0, (size_t)(end - rest)) : NULL;
	if (!s_end) {
		fputs("pmjq-spawn: a request with too few fields\n", stderr);
		exit(1);
	}
	const char *t = s_end + 1, *t_end = memchr(t, 0, (size_t)(end - t));
	char *token = strndup(t, t_end ? (size_t)(t_end - t) : (size_t)(end - t));
	long long by = strtoll(deadline, NULL, 10);
	size_t rest_len = (size_t)(end - rest);
	if (strcmp(after, "-") != 0 && by_token(after, strlen(after))) {
		struct held *h = xrealloc(NULL, sizeof *h);
		*h = (struct held){ .req = memcpy(xrealloc(NULL, rest_len), rest, rest_len), .len = rest_len,
				    .token = token, .after = xstrdup(after), .deadline = by };
		if (nheld == held_cap)
			held = xrealloc(held, (held_cap = held_cap ? 2 * held_cap : 16) * sizeof *held);
		held[nheld++] = h;
		return;
	}
	/* (AFTER is gone already, or "-": its slot is free) */
	start_by(rest, rest_len, token, by);
	free(token);
}

/* "x TOKEN": the held job TOKEN is not to start. */
static void cancel(const char *token, size_t len)
{
	for (size_t i = 0; i < nheld; i++) {
		if (strlen(held[i]->token) != len || memcmp(held[i]->token, token, len) != 0)
			continue;
		report("failed %s 0 cancelled", held[i]->token);
		drop_held(i);
		return;
	}
}

/*
 * What the daemon said, as far as it is whole: returns how many bytes of
 * `in` were used.
 */
static size_t requests(char *in, size_t len)
{
	size_t used = 0;
	for (;;) {
		char *p = in + used, *nl = memchr(p, '\n', len - used);
		if (!nl)
			return used;
		size_t head = (size_t)(nl - p) + 1;
		if (*p >= '0' && *p <= '9') {
			size_t n = strtoul(p, NULL, 10);
			if (len - used - head < n)
				return used;
			submit(p + head, n);
			used += head + n;
		} else if (p[0] == 'w' && p[1] == ' ') {
			char *sp = memchr(p + 2, ' ', head - 2);
			if (!sp)
				goto bad;
			size_t n = strtoul(sp + 1, NULL, 10);
			if (len - used - head < n)
				return used;
			struct job *j = by_token(p + 2, (size_t)(sp - p - 2));
			if (j && j->w4 >= 0) {
				j->out = xrealloc(j->out, j->out_len + n);
				memcpy(j->out + j->out_len, p + head, n);
				j->out_len += n;
				if (j->out_len > max_unread) {
					report("u %s", j->token);
					close_chan(j);
				}
			}
			used += head + n;
		} else if (p[0] == 'x' && p[1] == ' ') {
			cancel(p + 2, head - 3);
			used += head;
		} else if ((p[0] == 'r' || p[0] == 'c') && p[1] == ' ') {
			struct job *j = by_token(p + 2, head - 3);
			if (j && p[0] == 'r')
				j->credit = 1;
			else if (j)
				close_chan(j);
			used += head;
		} else {
bad:
			fprintf(stderr, "pmjq-spawn: a request it does not know: %.*s\n", (int)(head - 1), p);
			exit(1);
		}
	}
}

/*
 * Descriptors our parent left open without close-on-exec must not reach the
 * jobs; those we open ourselves are close-on-exec.
 */
static void close_inherited(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return;
	int own = dirfd(d), fds[1024], n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < 1024) {
		int fd = atoi(e->d_name);
		if (fd > 2 && fd != own)
			fds[n++] = fd;
	}
	closedir(d);
	while (n)
		close(fds[--n]);
}

static void nothing(int sig) { (void)sig; }

int main(int argc, char **argv)
{
	if (argc != 2) {
		fputs("usage: pmjq-spawn MAX_UNREAD\n", stderr);
		return 2;
	}
	/* (channel.ts MAX_UNREAD, given by the daemon: one number in one place) */
	max_unread = strtoul(argv[1], NULL, 10);
	/*
	 * The daemon decides when jobs stop: signals sent to its process group
	 * are not for us (we must live to report the exits); EOF on stdin ends
	 * us. They are blocked rather than ignored: a child unblocks them all at
	 * once. SIGCHLD too, but for the poll below, so that none comes between
	 * a reap and the poll.
	 */
	sigset_t blocked, during_poll;
	sigemptyset(&blocked);
	int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGCHLD };
	for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
		sigaddset(&blocked, sigs[i]);
	sigprocmask(SIG_BLOCK, &blocked, NULL);
	during_poll = blocked;
	sigdelset(&during_poll, SIGCHLD);
	struct sigaction sa = { .sa_handler = nothing };
	sigaction(SIGCHLD, &sa, NULL);
	close_inherited();
	/* descriptors 3-9 held, so that every descriptor a child moves to 0-4 is above them */
	for (int fd = 0; fd < 9;)
		if ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
			perror("pmjq-spawn: /dev/null");
			return 1;
		}
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

	report("ready %d", PROTOCOL);
	char *in = NULL;
	size_t in_len = 0, in_cap = 0;
	struct pollfd *pfd = NULL;
	struct job **pjob = NULL; /* the job of each pollfd but stdin's, and what for: */
	enum { WHY, FD3, FD4 } *pwhat = NULL;
	size_t pcap = 0;
	for (;;) {
		reap();
		size_t k = 0;
		for (size_t i = 0; i < njobs; i++) {
			if (jobs[i]->gone) {
				free(jobs[i]->token);
				free(jobs[i]);
			} else
				jobs[k++] = jobs[i];
		}
		njobs = k;
		if (pcap < 1 + 3 * njobs) {
			pcap = 2 * (1 + 3 * njobs);
			pfd = xrealloc(pfd, pcap * sizeof *pfd);
			pjob = xrealloc(pjob, pcap * sizeof *pjob);
			pwhat = xrealloc(pwhat, pcap * sizeof *pwhat);
		}
		size_t np = 0;
		pfd[np++] = (struct pollfd){ .fd = 0, .events = POLLIN };
		for (size_t i = 0; i < njobs; i++) {
			struct job *j = jobs[i];
			if (j->why_r >= 0)
				pjob[np] = j, pwhat[np] = WHY, pfd[np++] = (struct pollfd){ .fd = j->why_r, .events = POLLIN };
			if (j->r3 >= 0 && j->credit)
				pjob[np] = j, pwhat[np] = FD3, pfd[np++] = (struct pollfd){ .fd = j->r3, .events = POLLIN };
			if (j->w4 >= 0 && j->out_len)
				pjob[np] = j, pwhat[np] = FD4, pfd[np++] = (struct pollfd){ .fd = j->w4, .events = POLLOUT };
		}
		long long wait = expire_held();
		struct timespec until = { .tv_sec = wait / 1000, .tv_nsec = (wait % 1000) * 1000000 };
		int ready = ppoll(pfd, np, wait < 0 ? NULL : &until, &during_poll);
		expire_held();
		if (ready <= 0)
			continue; /* (a child ended: reaped above; or a deadline passed) */
		/* not waiting for each exec: meanwhile the other jobs' exits and requests are seen to */
		for (size_t i = 1; i < np; i++) {
			struct job *j = pjob[i];
			if (!pfd[i].revents || j->gone)
				continue;
			if (pwhat[i] == WHY && j->why_r >= 0)
				execd(j);
			else if (pwhat[i] == FD3 && j->r3 >= 0 && j->credit)
				from_job(j);
			else if (pwhat[i] == FD4 && j->w4 >= 0 && j->out_len)
				to_job(j);
		}
		if (!pfd[0].revents)
			continue;
		if (in_cap - in_len < 65536)
			in = xrealloc(in, in_cap = in_len + 65536);
		ssize_t got = read(0, in + in_len, 65536);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break; /* EOF: the daemon is gone */
		in_len += (size_t)got;
		size_t used = requests(in, in_len);
		memmove(in, in + used, in_len - used);
		in_len -= used;
	}
	return 0;
}
