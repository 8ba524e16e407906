package Pmjq;

# Pmjq - the client library for jobs written in Perl 5: the fd 3/4 protocol
# of pmjq(1) and chaqum(1) (see pmjq-protocol(7)). Core Perl only.
#
#   use lib $ENV{PMJQ_LIB};   # or: use lib '/path/to/pmjq/lib';
#   use Pmjq qw(enqueue waitjobs log_info);
#   my @jobs = map { enqueue({ group => 'convert', max_jobs => 2 }, 'convert', $_) } @files;
#   for my $r (waitjobs(@jobs)) { log_info($r->{job}->id, 'exited', $r->{status}{exitcode}) }
#
# Errors (an E answer, a closed channel) die with "pmjq: REASON".

use strict;
use warnings;
use Exporter 'import';
use Errno qw(EINTR EAGAIN);

our $VERSION = '0.1.0';
our @EXPORT_OK = qw(
    enqueue interval cron repeat waitjobs wait_first killjobs sendmsg sendjson
    waitrecv recvmsg recvjson parent ident
    log_critical log_error log_warning log_info log_debug
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

use constant { CMD_FD => 3, ANS_FD => 4 };

my ($wr, $rd);
my $inbuf = '';

sub _channel {
    return if $wr;
    open($wr, '>&=', CMD_FD) && open($rd, '<&=', ANS_FD)
        or die "pmjq: no command channel: fd 3/4 are not open (not running under pmjq or chaqum?)\n";
    binmode($wr);
    binmode($rd);
}

sub _write_all {
    my ($fh, $data) = @_;
    local $SIG{PIPE} = 'IGNORE';
    while (length $data) {
        my $n = syswrite($fh, $data);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            die "pmjq: the command channel was closed by the manager ($!)\n";
        }
        substr($data, 0, $n, '');
    }
}

sub _fill {
    for (;;) {
        my $n = sysread($rd, $inbuf, 65536, length $inbuf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            die "pmjq: reading answers failed: $!\n";
        }
        die "pmjq: the command channel was closed by the manager\n" if $n == 0;
        return;
    }
}

sub _readline {
    for (;;) {
        my $nl = index($inbuf, "\n");
        if ($nl >= 0) {
            my $line = substr($inbuf, 0, $nl);
            substr($inbuf, 0, $nl + 1, '');
            utf8::decode($line);
            return $line;
        }
        _fill();
    }
}

sub _read_exact {
    my ($n) = @_;
    _fill() while length($inbuf) < $n;
    return substr($inbuf, 0, $n, '');
}

# a word as the manager splits it back (POSIX shell single quotes)
sub quote_word {
    my ($w) = @_;
    $w = '' unless defined $w;
    die "pmjq: an argument cannot contain a newline\n" if $w =~ /\n/;
    return $w if $w =~ /\A[A-Za-z0-9_\@%+=:,.\/-]+\z/;
    $w =~ s/'/'\\''/g;
    return "'$w'";
}

# command(WORDS...) sends one command and returns the answer line; dies on E
sub command {
    my @words = @_;
    my $payload;
    $payload = ${ pop @words } if @words && ref $words[-1] eq 'SCALAR';
    _channel();
    my $line = join(' ', map { quote_word($_) } @words);
    utf8::encode($line) if utf8::is_utf8($line);
    $line .= "\n";
    $line .= $payload . "\n" if defined $payload;
    _write_all($wr, $line);
    my $a = _readline();
    if ($a eq 'E' || substr($a, 0, 2) eq 'E ') {
        die 'pmjq: ' . (length($a) > 2 ? substr($a, 2) : 'the manager refused the command') . "\n";
    }
    return $a;
}

sub _rest {
    my ($a) = @_;
    return '' if $a eq 'S';
    die "pmjq: unexpected answer '$a'\n" unless substr($a, 0, 2) eq 'S ';
    return substr($a, 2);
}

sub _pairs {
    my @w = split / /, $_[0];
    my %h;
    while (@w >= 2) { my $k = shift @w; $h{$k} = shift @w; }
    return \%h;
}

sub _id { my ($x) = @_; return ref $x ? $x->id : "$x"; }

sub _timeout { my ($t) = @_; return defined $t ? ('-t', $t) : (); }

# options as an optional leading hash reference
sub _opts { return (@_ && ref $_[0] eq 'HASH') ? (shift(@_), @_) : ({}, @_); }

# enqueue([{ group =>, max_jobs =>, max_cpu =>, forget => }], SCRIPT, ARGS...) -> Pmjq::Job
sub enqueue {
    my ($o, $script, @args) = _opts(@_);
    my @w = ('enqueue');
    push @w, '-F' if $o->{forget};
    push @w, '-g', $o->{group} if defined $o->{group};
    push @w, '-m', $o->{max_jobs} if defined $o->{max_jobs};
    push @w, '-c', $o->{max_cpu} if defined $o->{max_cpu};
    return Pmjq::Job->new(_rest(command(@w, '--', $script, @args)));
}

# repeat({ interval => '30s' } or { cron => '*/5 * * * * *' }, SCRIPT, ARGS...)
sub repeat {
    my ($o, $script, @args) = _opts(@_);
    my @opt = defined $o->{interval} ? ('-i', $o->{interval})
            : defined $o->{cron}     ? ('-c', $o->{cron})
            : die "pmjq: repeat needs interval or cron\n";
    _rest(command('repeat', @opt, '--', $script, @args));
    return 1;
}

# interval(SPEC, SCRIPT, ARGS...): SPEC '30s', '1h30m', '0s5m0h0d0w'
sub interval { my ($spec, @rest) = @_; return repeat({ interval => $spec }, @rest); }

# cron(EXPR, SCRIPT, ARGS...): 5 fields, or 6 with seconds first
sub cron { my ($expr, @rest) = @_; return repeat({ cron => $expr }, @rest); }

sub _job_results {
    my ($words, $timeout, @jobs) = @_;
    @jobs = map { ref $_ ? $_ : Pmjq::Job->new($_) } @jobs;
    my $r = _pairs(_rest(command(@$words, _timeout($timeout), '--', map { $_->id } @jobs)));
    return map {
        my $v = $r->{ $_->id };
        my $status = !defined $v ? undef
            : $v eq 'T' ? { timeout => 1, done => 0, exitcode => undef }
            : $v eq 'N' ? { timeout => 0, done => 1, exitcode => undef }
            :             { timeout => 0, done => 1, exitcode => 0 + $v };
        { job => $_, status => $status };
    } @jobs;
}

# waitjobs([{ timeout => T }], JOBS...) -> ({ job => JOB, status => { timeout, done, exitcode } | undef }, ...)
sub waitjobs { my ($o, @jobs) = _opts(@_); return _job_results(['waitjobs'], $o->{timeout}, @jobs); }

# wait_first([{ timeout => T }], JOBS...): returns as soon as one of them ended
sub wait_first { my ($o, @jobs) = _opts(@_); return _job_results(['wait', '-f'], $o->{timeout}, @jobs); }

# killjobs([{ timeout => T }], JOBS...): terminate, then as waitjobs
sub killjobs { my ($o, @jobs) = _opts(@_); return _job_results(['killjobs'], $o->{timeout}, @jobs); }

# sendmsg(JOB, BYTES) -> Pmjq::Message; character strings are sent as UTF-8
sub sendmsg {
    my ($to, $data) = @_;
    $data = '' unless defined $data;
    utf8::encode($data) if utf8::is_utf8($data);
    return Pmjq::Message->new(_rest(command('sendmsg', '--', _id($to), length($data), \$data)));
}

sub _json_encode {
    my ($v) = @_;
    require JSON::PP;
    return JSON::PP->new->utf8->canonical->allow_nonref->encode($v);
}

sub sendjson { my ($to, $v) = @_; return sendmsg($to, _json_encode($v)); }

# waitrecv([{ timeout => T }], MESSAGES...) -> ({ message => MSG, received => 0|1 }, ...)
sub waitrecv {
    my ($o, @msgs) = _opts(@_);
    @msgs = map { ref $_ ? $_ : Pmjq::Message->new($_) } @msgs;
    my $r = _pairs(_rest(command('waitrecv', _timeout($o->{timeout}), '--', map { $_->id } @msgs)));
    return map { { message => $_, received => (($r->{ $_->id } // '') eq 'R' ? 1 : 0) } } @msgs;
}

# recvmsg([TIMEOUT]) -> the next message (bytes), or undef at the timeout
sub recvmsg {
    my ($timeout) = @_;
    my $a = command('recvmsg', _timeout($timeout));
    return undef if $a eq 'T';
    my $len = _rest($a);
    die "pmjq: bad recvmsg answer '$a'\n" unless $len =~ /\A\d+\z/;
    my $data = _read_exact($len);
    die "pmjq: recvmsg: payload not followed by a newline\n" unless _read_exact(1) eq "\n";
    return $data;
}

sub recvjson {
    my $m = recvmsg(@_);
    return undef unless defined $m;
    require JSON::PP;
    return JSON::PP->new->utf8->allow_nonref->decode($m);
}

sub _log {
    my ($level, @args) = @_;
    my $text = join(' ', map { defined $_ ? $_ : '' } @args);
    utf8::encode($text) if utf8::is_utf8($text);
    my $out = join('', map { "$level\x1f$_\n" } split(/\n/, $text, -1));
    $out = "$level\x1f\n" if $out eq '';
    _write_all(\*STDERR, $out);
}

sub log_critical { _log('C', @_) }
sub log_error    { _log('E', @_) }
sub log_warning  { _log('W', @_) }
sub log_info     { _log('I', @_) }
sub log_debug    { _log('D', @_) }

# this job's id and its parent (a Pmjq::Job) when it is a sub-job
sub ident { return $ENV{CHAQUM_IDENT}; }
sub parent { return $ENV{CHAQUM_PARENT} ? Pmjq::Job->new($ENV{CHAQUM_PARENT}) : undef; }

package Pmjq::Job;

sub new { my ($class, $id) = @_; return bless { id => "$id" }, $class; }
sub id { return $_[0]{id}; }
sub wait { my ($self, $timeout) = @_; my ($r) = Pmjq::waitjobs({ timeout => $timeout }, $self); return $r->{status}; }
sub kill { my ($self, $timeout) = @_; my ($r) = Pmjq::killjobs({ timeout => $timeout }, $self); return $r->{status}; }
sub sendmsg { my ($self, $data) = @_; return Pmjq::sendmsg($self, $data); }
sub sendjson { my ($self, $v) = @_; return Pmjq::sendjson($self, $v); }

package Pmjq::Message;

sub new { my ($class, $id) = @_; return bless { id => "$id" }, $class; }
sub id { return $_[0]{id}; }
sub waitrecv { my ($self, $timeout) = @_; my ($r) = Pmjq::waitrecv({ timeout => $timeout }, $self); return $r->{received}; }

1;
