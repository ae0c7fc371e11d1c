// cni-kit-shim: what a container runtime execs in place of a cni-kit plugin in daemon mode.
//
// Every CNI call is a fresh exec, and starting Node costs ~30 ms of CPU before the plugin does
// anything; a static C program costs well under 1 ms. So this forwards the call to the long-lived
// cni-kit daemon over a Unix socket (HTTP/1.1, the protocol of multus' thick mode) and prints its
// answer. When no daemon can be reached it runs the plugin's Node bundle itself (exec mode), so
// nothing breaks while the daemon is down. libc only, so it links statically and runs on any node.
//
// Which plugin it is, where its bundle lives and its VERSION answer come from a trailer appended
// to this file by `cni-kit build --shim` (bytes after the ELF image are never mapped).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

// The trailer marker is "\n" + MARK. It is never spelled out whole here, so the base binary's own
// bytes cannot be mistaken for a trailer by the shim or by the tools that read it.
#define MARK "--cni-kit-shim--\n"
#define TAIL 4096

struct buf { char *p; size_t n, cap; };
static const char *cni_version = "1.1.0";
static char cni_version_buf[32];
static long long deadline;
static int timeout_ms = 120000;

#define RETRY \
  "the call reached the cni-kit daemon, which may have done part of it: retry it (a DEL cleans up) " \
  "and see the daemon's log"
#define EXEC \
  "the cni-kit daemon could not be reached, so the plugin ran in exec mode (its Node bundle); " \
  "start the daemon or repair the bundle"
#define TIMEOUT "cni-kit daemon at %s: no reply within %d ms"

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w, n -= (size_t)w;
  }
}

static void put(struct buf *b, const void *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {  // Nothing can be formatted any more; a fixed error is still an answer.
      static const char oom[] =
          "{\"cniVersion\":\"1.1.0\",\"code\":11,\"msg\":\"cni-kit shim: out of memory\"}\n";
      write_all(1, oom, sizeof oom - 1);
      _exit(1);
    }
    b->p = p, b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

// Length of the valid UTF-8 sequence at s, 0 if invalid: JSON text must be UTF-8, and an
// environment may hold any bytes, so invalid ones become U+FFFD (as Go's encoder does).
static size_t utf8_len(const unsigned char *s, size_t n) {
  size_t len;
  unsigned cp, min;
  if (s[0] >= 0xc2 && s[0] <= 0xdf) len = 2, cp = s[0] & 0x1f, min = 0x80;
  else if ((s[0] & 0xf0) == 0xe0) len = 3, cp = s[0] & 0x0f, min = 0x800;
  else if (s[0] >= 0xf0 && s[0] <= 0xf4) len = 4, cp = s[0] & 0x07, min = 0x10000;
  else return 0;
  if (len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : len;
}

static void json_str(struct buf *b, const char *s, size_t n) {
  put(b, "\"", 1);
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)s[i];
    size_t len = c < 0x80 ? 1 : utf8_len((const unsigned char *)s + i, n - i);
    if (c < 0x20 || c == '"' || c == '\\') {
      char e[8];
      snprintf(e, sizeof e, "\\u%04x", c);
      put(b, e, 6);
    } else if (len) {
      put(b, s + i, len);
    } else {
      put(b, "\\ufffd", 6), len = 1;
    }
    i += len;
  }
  put(b, "\"", 1);
}

static void base64(struct buf *b, const unsigned char *s, size_t n) {
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
    char o[4] = {t[v >> 18], t[v >> 12 & 63], i + 1 < n ? t[v >> 6 & 63] : '=', i + 2 < n ? t[v & 63] : '='};
    put(b, o, 4);
  }
}

// The shim's own answers are CNI errors in the config's version, so a runtime parses them as it
// would the plugin's; a full JSON parse is not worth its code for one field.
static void scan_cni_version(const char *s, size_t n) {
  const char *p = memmem(s, n, "\"cniVersion\"", 12), *end = s + n;
  if (!p) return;
  for (p += 12; p < end && strchr(" \t\r\n:", *p); p++) {}
  if (p >= end || *p++ != '"') return;
  size_t i = 0;
  while (p < end && i < sizeof cni_version_buf - 1 && *p && strchr("0123456789.-abcdefghijklmnopqrstuvwxyz", *p))
    cni_version_buf[i++] = *p++;
  if (i > 0 && p < end && *p == '"') cni_version_buf[i] = 0, cni_version = cni_version_buf;
}

// Every failure of the shim itself is answered like this; `details` says what to do about it.
__attribute__((format(printf, 3, 4), noreturn)) static void die(int code, const char *details, const char *fmt,
                                                                 ...) {
  char msg[2048], head[48];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  struct buf b = {0};
  puts_(&b, "{\"cniVersion\":");
  json_str(&b, cni_version, strlen(cni_version));
  snprintf(head, sizeof head, ",\"code\":%d,\"msg\":", code);
  puts_(&b, head);
  json_str(&b, msg, strlen(msg));
  puts_(&b, ",\"details\":");
  json_str(&b, details, strlen(details));
  puts_(&b, "}\n");
  write_all(1, b.p, b.n);
  exit(1);
}

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}
static int left(void) {
  long long l = deadline - now_ms();
  return l < 0 ? 0 : l > INT_MAX ? INT_MAX : (int)l;
}
static int wait_fd(int fd, short events) {  // 1 ready, 0 deadline passed
  struct pollfd p = {fd, events, 0};
  int r;
  while ((r = poll(&p, 1, left())) < 0 && errno == EINTR) {}
  return r > 0;
}

static char exe[PATH_MAX], tail_[TAIL + 1];
static const char *t_type, *t_fallback, *t_version, *t_socket;

static int load_trailer(void) {
  ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (l < 0) return 0;
  exe[l] = 0;
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0) return 0;
  if (fstat(fd, &st) < 0) return close(fd), 0;
  off_t off = st.st_size > TAIL ? st.st_size - TAIL : 0;
  size_t n = 0;
  while (n < (size_t)(st.st_size - off)) {
    ssize_t r = pread(fd, tail_ + n, TAIL - n, off + (off_t)n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  char *start = NULL, *end = tail_ + n;
  for (char *p = tail_; (p = memmem(p, (size_t)(end - p), MARK, sizeof MARK - 1)); p++)
    if (p > tail_ && p[-1] == '\n') start = p + sizeof MARK - 1;
  for (char *line = start; line && line < end;) {
    char *nl = memchr(line, '\n', (size_t)(end - line));
    if (!nl) return 0;
    *nl = 0;
    if (!strcmp(line, "--end--")) return nl + 1 == end && t_type && t_fallback && t_version;
    if (!strncmp(line, "type=", 5)) t_type = line + 5;
    else if (!strncmp(line, "fallback=", 9)) t_fallback = line + 9;
    else if (!strncmp(line, "version=", 8)) t_version = line + 8;
    else if (!strncmp(line, "socket=", 7)) t_socket = line + 7;
    line = nl + 1;
  }
  return 0;
}

// Any failure here means "no daemon": the caller falls back to exec mode.
static int dial(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) return errno = ENAMETOOLONG, -1;
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  // A Unix connect blocks only while the listener's backlog is full, for at most SO_SNDTIMEO.
  struct timeval tv = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int r;
  while ((r = connect(fd, (struct sockaddr *)&a, sizeof a)) < 0 && errno == EINTR) {}
  if (r < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
    int e = errno;
    close(fd);
    return errno = e, -1;
  }
  return fd;
}

// Once connected, the daemon may have done part of the call: every failure from here on is a
// "try again" error, never a fallback that would run the call a second time.
static void call_daemon(int fd, const char *sock) {
  struct buf in = {0}, req = {0}, body = {0}, rep = {0};
  char tmp[65536];
  for (;;) {
    ssize_t r = read(0, tmp, sizeof tmp);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die(11, "", "cni-kit shim: reading the config from stdin: %s", strerror(errno));
    if (r == 0) break;
    put(&in, tmp, (size_t)r);
  }
  scan_cni_version(in.p ? in.p : "", in.n);
  puts_(&body, "{\"env\":{");
  int first = 1;
  for (char **e = environ; *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq) continue;
    if (!first) puts_(&body, ",");
    first = 0;
    json_str(&body, *e, (size_t)(eq - *e));
    puts_(&body, ":");
    json_str(&body, eq + 1, strlen(eq + 1));
  }
  puts_(&body, "},\"config\":\"");
  base64(&body, (const unsigned char *)in.p, in.n);
  puts_(&body, "\"}");
  snprintf(tmp, sizeof tmp,
           "POST /cni HTTP/1.1\r\nHost: cni-kit\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
           "X-Cni-Kit-Shim: 1\r\nX-Cni-Kit-Plugin: %s\r\nConnection: close\r\n\r\n",
           body.n, t_type);
  puts_(&req, tmp);
  put(&req, body.p, body.n);

  // A daemon may answer (413) and close before reading everything: a write error is reported
  // only if no complete reply can be read after it.
  int werr = 0, rerr = 0, status = 0;
  for (size_t off = 0; off < req.n && !werr;) {
    ssize_t w = send(fd, req.p + off, req.n - off, MSG_NOSIGNAL);
    if (w > 0) off += (size_t)w;
    else if (w < 0 && errno == EAGAIN) {
      if (!wait_fd(fd, POLLOUT)) die(11, RETRY, TIMEOUT, sock, timeout_ms);
    } else if (errno != EINTR) werr = errno;
  }
  // Offsets, not pointers: the reply buffer moves as it grows.
  size_t body_at = 0;  // 0 until the header is complete
  long long clen = -1;
  for (;;) {
    char *end = body_at ? NULL : memmem(rep.p ? rep.p : "", rep.n, "\r\n\r\n", 4);
    if (end) {
      int minor;
      body_at = (size_t)(end - rep.p) + 4;
      if (sscanf(rep.p, "HTTP/1.%d %3d", &minor, &status) != 2 || status < 100) status = -1;
      for (char *h = strstr(rep.p, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n")) {
        if (!strncasecmp(h + 2, "content-length:", 15)) clen = strtoll(h + 17, NULL, 10);
        if (!strncasecmp(h + 2, "transfer-encoding:", 18)) status = -1;  // chunked: not spoken
      }
      if (status < 0) break;
    }
    if (body_at && clen >= 0 && rep.n - body_at >= (size_t)clen) break;
    if (!wait_fd(fd, POLLIN)) die(11, RETRY, TIMEOUT, sock, timeout_ms);
    ssize_t r = read(fd, tmp, sizeof tmp);
    if (r > 0) put(&rep, tmp, (size_t)r);
    else if (r == 0) break;
    else if (errno != EINTR && errno != EAGAIN) {
      rerr = errno;
      break;
    }
  }
  int e = rerr ? rerr : werr;
  const char *sep = e ? ": " : "", *why = e ? strerror(e) : "";
  if (status < 0) die(11, RETRY, "cni-kit daemon at %s: unusable reply (bad status line or chunked)", sock);
  if (!body_at) die(11, RETRY, "cni-kit daemon at %s: the connection ended before a reply%s%s", sock, sep, why);
  size_t got = rep.n - body_at, n = clen >= 0 ? (size_t)clen : got;
  if (got < n || (clen < 0 && rerr))
    die(11, RETRY, "cni-kit daemon at %s: the connection ended after %zu bytes of the reply body%s%s", sock, got,
        sep, why);
  const char *body_p = rep.p + body_at;
  if (status == 200 || status == 400 || (n > 0 && body_p[0] == '{')) {
    write_all(1, body_p, n);
    exit(status == 200 ? 0 : 1);
  }
  die(11, RETRY, "cni-kit daemon at %s: answered HTTP %d without a CNI result", sock, status);
}

// Exec mode: the Node bundle of this plugin, its output buffered so that a killed or failed run
// never leaves half a result on stdout, under a watchdog because libcni sets no timeout.
static void fallback(const char *sock, int dial_errno) {
  static char path[PATH_MAX * 2];
  if (t_fallback[0] == '/') snprintf(path, sizeof path, "%s", t_fallback);
  else snprintf(path, sizeof path, "%.*s/%s", (int)(strrchr(exe, '/') - exe), exe, t_fallback);
  int out[2], ep[2];
  pid_t parent = getpid(), pid;
  if (pipe2(out, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0 || (pid = fork()) < 0)
    die(11, EXEC, "cni-kit shim: cannot start %s: %s", path, strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);  // its own group, so the watchdog kills whatever it spawned as well
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    signal(SIGPIPE, SIG_DFL);
    dup2(out[1], 1);
    // Both make every Node start pay for them (35 ms here) and may break it; the runtime's
    // environment is not meant for the plugin's interpreter.
    unsetenv("NODE_OPTIONS");
    unsetenv("NODE_EXTRA_CA_CERTS");
    char *argv[] = {path, NULL};
    execv(path, argv);
    int e = errno;
    write_all(ep[1], (const char *)&e, sizeof e);
    _exit(127);
  }
  setpgid(pid, pid);
  close(out[1]);
  close(ep[1]);
  int e = 0, st = 0;
  ssize_t r;
  while ((r = read(ep[0], &e, sizeof e)) < 0 && errno == EINTR) {}
  if (r == sizeof e) {
    waitpid(pid, &st, 0);
    die(11, EXEC, "cni-kit shim: cannot run the exec-mode plugin %s (%s), and the cni-kit daemon at %s was "
        "unreachable too (%s)", path, strerror(e), sock, strerror(dial_errno));
  }
  struct buf res = {0};
  char tmp[65536];
  int exited = 0, open_ = 1;
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  while (!exited) {
    if (left() == 0) {
      kill(-pid, SIGTERM);
      for (long long until = now_ms() + 2000; !exited && now_ms() < until; usleep(10000))
        exited = waitpid(pid, &st, WNOHANG) == pid;
      kill(-pid, SIGKILL);
      if (!exited) waitpid(pid, &st, 0);
      die(11, EXEC, "cni-kit shim: %s did not finish within %d ms; killed (the cni-kit daemon at %s was "
          "unreachable)", path, timeout_ms, sock);
    }
    if (open_) {
      struct pollfd p = {out[0], POLLIN, 0};
      // Wakes at output or EOF, and looks at the child at least every 100 ms.
      poll(&p, 1, left() < 100 ? left() : 100);
      while ((r = read(out[0], tmp, sizeof tmp)) > 0 || (r < 0 && errno == EINTR))
        if (r > 0) put(&res, tmp, (size_t)r);
      if (r == 0) open_ = 0;
    } else {
      usleep(500);
    }
    exited = waitpid(pid, &st, WNOHANG) == pid;
  }
  // Once the plugin has exited, a grandchild still holding the pipe is not waited for.
  while (open_ && (r = read(out[0], tmp, sizeof tmp)) > 0) put(&res, tmp, (size_t)r);
  if (WIFSIGNALED(st))
    die(11, EXEC, "cni-kit shim: %s was killed by signal %d (%s)", path, WTERMSIG(st),
        strsignal(WTERMSIG(st)));
  if (res.n > 0) write_all(1, res.p, res.n);
  if (WEXITSTATUS(st) == 0) exit(0);
  if (res.n == 0)
    die(999, EXEC, "cni-kit shim: %s exited with status %d and printed nothing", path, WEXITSTATUS(st));
  exit(1);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  if (!load_trailer())
    die(999, "a runtime execs one shim per plugin type, each carrying its trailer",
        "%s is the cni-kit shim without its plugin trailer (type, fallback, version): install it for a "
        "plugin with `cni-kit build <entry> -o <bundle> --shim <file>`", exe[0] ? exe : "this program");
  const char *cmd = getenv("CNI_COMMAND");
  if (cmd && !strcmp(cmd, "VERSION")) {
    struct buf b = {0};
    puts_(&b, t_version);
    puts_(&b, "\n");
    write_all(1, b.p, b.n);
    return 0;
  }
  const char *t = getenv("CNI_KIT_EXEC_TIMEOUT_MS");
  long v = t ? strtol(t, NULL, 10) : 0;
  if (v > 0) timeout_ms = v > INT_MAX ? INT_MAX : (int)v;
  const char *sock = getenv("CNI_KIT_DAEMON_SOCKET");
  if (!sock || !*sock) sock = t_socket && *t_socket ? t_socket : "/run/cni-kit/daemon.sock";
  int fd = dial(sock), dial_errno = errno;
  deadline = now_ms() + timeout_ms;
  if (fd < 0) fallback(sock, dial_errno);
  call_daemon(fd, sock);
  return 1;
}
