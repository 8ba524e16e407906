"""pmjq: the client library for jobs written in Python 3.

Speaks the fd 3/4 protocol of pmjq(1) and chaqum(1) (see pmjq-protocol(7))
and offers the names of chaqum's client library, so chaqum jobs run
unchanged:

    from pmjq import *

    jobs = [enqueue("convert", f, group="convert", max_jobs=2) for f in files]
    for job, status in waitjobs(*jobs):
        log.info(job.ident, "exited with", status.exitcode)

No dependencies beyond the standard library. Calls block until answered.
"""

import json
import os
import re
import sys

__all__ = (
    "log", "enqueue", "interval", "cron", "repeat", "waitjobs", "wait",
    "killjobs", "sendmsg", "sendjson", "waitrecv", "recvmsg", "recvjson",
    "job", "msg", "job_status", "parent", "ident", "ProtocolError",
)

CMD_FD = 3
ANS_FD = 4

# print() from a job should reach its log line by line, not in blocks
for _stream in (sys.stdout, sys.stderr):
    try:
        _stream.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass


class ProtocolError(Exception):
    """The manager answered E (the reason is the message), or the channel is gone."""


# ---- logging: a level letter and the unit separator before each line ----

def _send_log(level, sep, args):
    text = sep.join(str(a) for a in args)
    data = b"".join(level + b"\x1f" + line.encode("utf-8", "surrogateescape") + b"\n"
                    for line in text.split("\n"))
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    _write_all(2, data)


class log:
    @staticmethod
    def critical(*args, sep=" "):
        _send_log(b"C", sep, args)

    @staticmethod
    def error(*args, sep=" "):
        _send_log(b"E", sep, args)

    @staticmethod
    def warning(*args, sep=" "):
        _send_log(b"W", sep, args)

    @staticmethod
    def info(*args, sep=" "):
        _send_log(b"I", sep, args)

    @staticmethod
    def debug(*args, sep=" "):
        _send_log(b"D", sep, args)


# ---- quoting: what the manager splits back into words ----

_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def _quote(word):
    word = str(word)
    if "\n" in word:
        raise ProtocolError("an argument cannot contain a newline")
    if _SAFE.match(word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


# ---- the channel ----

_inbuf = bytearray()


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except BrokenPipeError:
            raise ProtocolError("the command channel was closed by the manager")
        except OSError as e:
            if fd == CMD_FD and e.errno == 9:
                raise ProtocolError("no command channel: fd 3/4 are not open (not running under pmjq or chaqum?)")
            raise
        view = view[n:]


def _fill():
    try:
        chunk = os.read(ANS_FD, 65536)
    except InterruptedError:
        return
    except OSError as e:
        if e.errno == 9:
            raise ProtocolError("no command channel: fd 3/4 are not open (not running under pmjq or chaqum?)")
        raise
    if not chunk:
        raise ProtocolError("the command channel was closed by the manager")
    _inbuf.extend(chunk)


def _readline():
    while True:
        nl = _inbuf.find(b"\n")
        if nl >= 0:
            line = bytes(_inbuf[:nl])
            del _inbuf[:nl + 1]
            return line.decode("utf-8", "surrogateescape")
        _fill()


def _read_exact(n):
    while len(_inbuf) < n:
        _fill()
    data = bytes(_inbuf[:n])
    del _inbuf[:n]
    return data


def _answer():
    line = _readline()
    if line == "E" or line.startswith("E "):
        raise ProtocolError(line[2:] or "the manager refused the command")
    return line


def _rest(answer):
    if answer == "S":
        return ""
    if not answer.startswith("S "):
        raise ProtocolError("unexpected answer %r" % answer)
    return answer[2:]


def _command(*words, payload=None):
    data = (" ".join(_quote(w) for w in words) + "\n").encode("utf-8", "surrogateescape")
    if payload is not None:
        data += payload + b"\n"
    _write_all(CMD_FD, data)
    return _answer()


def _timeout(timeout):
    return () if timeout is None else ("-t", timeout)


def _pairs(text):
    words = text.split(" ") if text else []
    return dict(zip(words[0::2], words[1::2]))


# ---- jobs and messages ----

class msg:
    def __init__(self, ident):
        self.ident = str(ident)

    id = property(lambda self: self.ident)

    def waitrecv(self, timeout=None):
        """True once received; False at the timeout or if it never will be."""
        ((_, received),) = waitrecv(self, timeout=timeout)
        return received

    def __eq__(self, other):
        return isinstance(other, msg) and other.ident == self.ident

    def __hash__(self):
        return hash(self.ident)

    def __str__(self):
        return self.ident

    def __repr__(self):
        return "msg(%r)" % self.ident


class job_status:
    """timeout: still running at the timeout; done: it ended; exitcode: None without one."""

    def __init__(self, timeout, done, exitcode):
        self.timeout = timeout
        self.done = done
        self.exitcode = exitcode

    def __eq__(self, other):
        return isinstance(other, job_status) and (self.timeout, self.done, self.exitcode) == (other.timeout, other.done, other.exitcode)

    def __repr__(self):
        return "job_status(timeout=%r, done=%r, exitcode=%r)" % (self.timeout, self.done, self.exitcode)


class job:
    def __init__(self, ident):
        self.ident = str(ident)

    id = property(lambda self: self.ident)

    def wait(self, timeout=None):
        ((_, status),) = waitjobs(self, timeout=timeout)
        return status

    def kill(self, timeout=None):
        ((_, status),) = killjobs(self, timeout=timeout)
        return status

    def sendmsg(self, buf):
        return sendmsg(self, buf)

    def sendjson(self, obj):
        return sendjson(self, obj)

    def __eq__(self, other):
        return isinstance(other, job) and other.ident == self.ident

    def __hash__(self):
        return hash(self.ident)

    def __str__(self):
        return self.ident

    def __repr__(self):
        return "job(%r)" % self.ident


def _ident(item):
    return item.ident if isinstance(item, (job, msg)) else str(item)


# ---- commands ----

def enqueue(script, *args, group=None, max_jobs=None, max_cpu=None, forget=False):
    """Queue SCRIPT (absolute, or relative to the job tree) with ARGS; returns a job at once."""
    opts = []
    if forget:
        opts.append("-F")
    if group is not None:
        opts += ["-g", group]
    if max_jobs is not None:
        opts += ["-m", max_jobs]
    if max_cpu is not None:
        opts += ["-c", max_cpu]
    return job(_rest(_command("enqueue", *opts, "--", script, *args)))


def repeat(script, *args, interval=None, cron=None):
    if (interval is None) == (cron is None):
        raise ValueError("give one of interval= or cron=")
    opt = ("-i", interval) if interval is not None else ("-c", cron)
    _rest(_command("repeat", *opt, "--", script, *args))


def interval(script, *args, seconds=0, minutes=0, hours=0, days=0, weeks=0):
    """Run SCRIPT every interval, at most one instance at a time."""
    repeat(script, *args, interval="%ss%sm%sh%sd%sw" % (seconds, minutes, hours, days, weeks))


def cron(script, *args, second="*", minute="*", hour="*", day="*", month="*", day_of_week="*"):
    """Run SCRIPT at the times of a 6-field cron (seconds first; unset fields are '*')."""
    repeat(script, *args, cron="%s %s %s %s %s %s" % (second, minute, hour, day, month, day_of_week))


def _job_results(words, jobs, timeout):
    jobs = [j if isinstance(j, job) else job(j) for j in jobs]
    results = _pairs(_rest(_command(*words, *_timeout(timeout), "--", *(j.ident for j in jobs))))
    out = []
    for j in jobs:
        r = results.get(j.ident)
        if r is None:
            status = None  # unknown to the manager (any more)
        elif r == "T":
            status = job_status(True, False, None)
        elif r == "N":
            status = job_status(False, True, None)
        else:
            status = job_status(False, True, int(r))
        out.append((j, status))
    return out


def waitjobs(*jobs, timeout=None):
    """Wait until all JOBS ended (or TIMEOUT seconds); a list of (job, job_status)."""
    return _job_results(("waitjobs",), jobs, timeout)


def wait(*jobs, first=False, timeout=None):
    """As waitjobs; first=True returns as soon as one of them ended."""
    return _job_results(("wait", "-f" if first else "-a"), jobs, timeout)


def killjobs(*jobs, timeout=None):
    """Terminate JOBS, then wait for them as waitjobs does."""
    return _job_results(("killjobs",), jobs, timeout)


def sendmsg(to, data):
    """Send bytes (str is sent as UTF-8) to the job TO; returns a msg."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    data = bytes(data)
    return msg(_rest(_command("sendmsg", "--", _ident(to), len(data), payload=data)))


def sendjson(to, obj):
    return sendmsg(to, json.dumps(obj).encode("utf-8"))


def waitrecv(*messages, timeout=None):
    """Wait until MESSAGES were received; a list of (msg, received)."""
    messages = [m if isinstance(m, msg) else msg(m) for m in messages]
    results = _pairs(_rest(_command("waitrecv", *_timeout(timeout), "--", *(m.ident for m in messages))))
    return [(m, results.get(m.ident) == "R") for m in messages]


def recvmsg(timeout=None):
    """The next message for this job (bytes), or None at the timeout."""
    answer = _command("recvmsg", *_timeout(timeout))
    if answer == "T":
        return None
    length = int(_rest(answer))
    data = _read_exact(length)
    if _read_exact(1) != b"\n":
        raise ProtocolError("recvmsg: payload not followed by a newline")
    return data


def recvjson(timeout=None):
    """The next message decoded as JSON, or None at the timeout."""
    data = recvmsg(timeout=timeout)
    return None if data is None else json.loads(data.decode("utf-8"))


ident = os.environ.get("CHAQUM_IDENT")
parent = job(os.environ["CHAQUM_PARENT"]) if os.environ.get("CHAQUM_PARENT") else None
