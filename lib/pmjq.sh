# pmjq.sh - the client library for jobs written in POSIX sh: the fd 3/4
# protocol of pmjq(1) and chaqum(1) (see pmjq-protocol(7)). Source it:
#
#   . /path/to/pmjq/lib/pmjq.sh          # `pmjq --lib sh` prints the path
#   id=$(pmjq_enqueue -g convert -m 2 convert "$file") || exit 1
#   pmjq_wait "$id"                        # prints "ID CODE" per job
#
# Functions print their result on stdout and return 0 on success, 110 on a
# timeout (ETIMEDOUT) and 1 on an error (the manager's reason goes to
# stderr as an error log line). Arguments may hold anything but a newline.
# Variables and functions of this file start with pmjq_ (public) or pmjq__.

pmjq__nl='
'

# pmjq__q WORD: append WORD, single-quoted, to $pmjq__line
pmjq__q() {
  case $1 in
    *"$pmjq__nl"*) pmjq_log_error "pmjq: an argument cannot contain a newline"; return 1 ;;
  esac
  pmjq__s=$1 pmjq__o=
  while :; do
    case $pmjq__s in
      *\'*) pmjq__o="$pmjq__o${pmjq__s%%\'*}'\\''"; pmjq__s=${pmjq__s#*\'} ;;
      *) pmjq__o="$pmjq__o$pmjq__s"; break ;;
    esac
  done
  pmjq__line="$pmjq__line '$pmjq__o'"
}

# pmjq__cmd NAME WORD...: send one command; the answer is in $pmjq_status
# (S, E or T) and $pmjq_answer (the rest of the line)
pmjq__cmd() {
  pmjq__line=$1
  shift
  for pmjq__w in "$@"; do pmjq__q "$pmjq__w" || return 1; done
  pmjq__send
}

# pmjq__send: send $pmjq__line, read the answer
pmjq__send() {
  printf '%s\n' "$pmjq__line" >&3 || { pmjq_log_error "pmjq: no command channel on fd 3"; return 1; }
  pmjq__read
}

pmjq__read() {
  pmjq_status= pmjq_answer=
  IFS=' ' read -r pmjq_status pmjq_answer <&4 || { pmjq_log_error "pmjq: the command channel was closed"; return 1; }
  case $pmjq_status in
    S) return 0 ;;
    T) return 110 ;;
    *) pmjq_log_error "pmjq: ${pmjq_answer:-the manager refused the command}"; return 1 ;;
  esac
}

# pmjq_cmd WORD...: send any command, print the answer after S (raw access)
pmjq_cmd() {
  pmjq__cmd "$@" || return
  [ -z "$pmjq_answer" ] || printf '%s\n' "$pmjq_answer"
}

# pmjq_enqueue [-F] [-g GROUP] [-m MAXPROC] [-c MAXCPU] [--] SCRIPT [ARG...]: print the job id
pmjq_enqueue() {
  pmjq__line=enqueue
  while [ $# -gt 0 ]; do
    case $1 in
      -F) pmjq__line="$pmjq__line -F" ;;
      -g|-m|-c) pmjq__q "$1" && pmjq__q "${2-}" || return 1; shift ;;
      --) shift; break ;;
      *) break ;;
    esac
    shift
  done
  pmjq__line="$pmjq__line --"
  for pmjq__w in "$@"; do pmjq__q "$pmjq__w" || return 1; done
  pmjq__send || return
  printf '%s\n' "$pmjq_answer"
}

# pmjq_repeat_interval INTERVAL SCRIPT [ARG...]   (30s, 5m, 1h30m, 0s5m0h0d0w)
pmjq_repeat_interval() {
  pmjq__i=$1; shift
  pmjq__cmd repeat -i "$pmjq__i" -- "$@"
}

# pmjq_repeat_cron 'CRON' SCRIPT [ARG...]   (5 fields, or 6 with seconds first)
pmjq_repeat_cron() {
  pmjq__c=$1; shift
  pmjq__cmd repeat -c "$pmjq__c" -- "$@"
}

# pmjq__pairs: print "ID RESULT" lines from $pmjq_answer
pmjq__pairs() {
  case $- in *f*) pmjq__f= ;; *) pmjq__f=1; set -f ;; esac
  # shellcheck disable=SC2086
  set -- $pmjq_answer
  [ -z "$pmjq__f" ] || set +f
  while [ $# -ge 2 ]; do printf '%s %s\n' "$1" "$2"; shift 2; done
}

# pmjq__waitcmd CMD FLAGS [-t TIMEOUT] [--] ID...: status 110 if any is still running
pmjq__waitcmd() {
  pmjq__c=$1; shift
  pmjq__line=$pmjq__c
  while [ $# -gt 0 ]; do
    case $1 in
      -a|-f) pmjq__line="$pmjq__line $1" ;;
      -t) pmjq__q "$1" && pmjq__q "${2-}" || return 1; shift ;;
      --) shift; break ;;
      *) break ;;
    esac
    shift
  done
  pmjq__line="$pmjq__line --"
  for pmjq__w in "$@"; do pmjq__q "$pmjq__w" || return 1; done
  pmjq__send || return
  pmjq__pairs
  case " $pmjq_answer " in *" T "*) return 110 ;; esac
  return 0
}

# pmjq_wait [-a|-f] [-t TIMEOUT] ID...: print "ID CODE" (N: no exit code, T: still running)
pmjq_wait() { pmjq__waitcmd wait "$@"; }

# pmjq_waitjobs [-t TIMEOUT] ID...: as pmjq_wait
pmjq_waitjobs() { pmjq__waitcmd waitjobs "$@"; }

# pmjq_kill [-t TIMEOUT] ID...: terminate, then as pmjq_wait
pmjq_kill() { pmjq__waitcmd killjobs "$@"; }

# pmjq_waitrecv [-t TIMEOUT] MSGID...: print "MSGID R" (received), T or N (never: recipient ended)
pmjq_waitrecv() { pmjq__waitcmd waitrecv "$@"; }

# pmjq_sendmsg JOBID DATA: send DATA (bytes as given) to JOBID, print the message id
pmjq_sendmsg() {
  pmjq__len=$(printf '%s' "$2" | wc -c | tr -d ' ') || return 1
  pmjq__line=sendmsg
  pmjq__q -- && pmjq__q "$1" && pmjq__q "$pmjq__len" || return 1
  printf '%s\n%s\n' "$pmjq__line" "$2" >&3 || { pmjq_log_error "pmjq: no command channel on fd 3"; return 1; }
  pmjq__read || return
  printf '%s\n' "$pmjq_answer"
}

# pmjq_sendmsg_file JOBID FILE: send the contents of FILE
pmjq_sendmsg_file() {
  pmjq__len=$(wc -c <"$2" | tr -d ' ') || return 1
  pmjq__line=sendmsg
  pmjq__q -- && pmjq__q "$1" && pmjq__q "$pmjq__len" || return 1
  { printf '%s\n' "$pmjq__line"; cat "$2"; printf '\n'; } >&3 || { pmjq_log_error "pmjq: no command channel on fd 3"; return 1; }
  pmjq__read || return
  printf '%s\n' "$pmjq_answer"
}

# pmjq_recvmsg [-t TIMEOUT]: write the next message to stdout (exactly its bytes);
# status 110 at the timeout
pmjq_recvmsg() {
  if [ "${1-}" = -t ]; then pmjq__cmd recvmsg -t "${2-}"; else pmjq__cmd recvmsg; fi || return
  case $pmjq_answer in
    ''|*[!0-9]*) pmjq_log_error "pmjq: bad recvmsg answer '$pmjq_status $pmjq_answer'"; return 1 ;;
  esac
  if [ "$pmjq_answer" -gt 0 ]; then
    if [ -n "${pmjq__gnuhead-}" ]; then
      head -c "$pmjq_answer" <&4
    else
      dd bs=1 count="$pmjq_answer" <&4 2>/dev/null
    fi
  fi
  IFS= read -r pmjq__w <&4
}

# GNU head reads no more than it prints, so it can take a message off fd 4
# (other heads may read ahead); elsewhere dd reads it byte by byte
if head --version 2>/dev/null | grep -q coreutils; then pmjq__gnuhead=1; fi

pmjq__log() {
  pmjq__lvl=$1; shift
  printf '%s\n' "$*" | while IFS= read -r pmjq__l || [ -n "$pmjq__l" ]; do
    printf '%s\037%s\n' "$pmjq__lvl" "$pmjq__l"
  done >&2
}

# pmjq_log_info WORD...: one log line (per line of text) with its level
pmjq_log_critical() { pmjq__log C "$@"; }
pmjq_log_error() { pmjq__log E "$@"; }
pmjq_log_warning() { pmjq__log W "$@"; }
pmjq_log_info() { pmjq__log I "$@"; }
pmjq_log_debug() { pmjq__log D "$@"; }

# this job's id and its parent's (empty for a top-level job)
pmjq_ident=${CHAQUM_IDENT-}
pmjq_parent=${CHAQUM_PARENT-}
