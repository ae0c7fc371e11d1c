// A light load driver for bench/ipam-whereabouts-daemon.ts, compiled at bench time with the
// system C compiler. It forks CLIENTS workers that each make PER CNI ADD calls one after another,
// either
//   wire  speaking the daemon's protocol itself (HTTP/1.1 POST /cni over its Unix socket, as
//         cni-kit's shim does: {"env": {...}, "config": "<stdin, base64>"}), no exec at all; or
//   exec  fork/exec of a shim with CNI_* in its environment and the config on its stdin, as a
//         runtime runs a plugin.
// Every call prints one line on stdout (one write(2), so lines from workers never interleave):
//   ok <µs> <first address of the result>
//   err <µs> <CNI error code, or -1> <the start of the reply>
// usage: wb-load wire|exec <socket|shim> <clients> <per> <tag> <config file> [NAME=VALUE ...]
// The container ID of call j of worker i is <tag>-<i>-<j>; NAME=VALUE pairs join the environment.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *config;
static size_t config_len;
static char *config_b64;

static long long now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void die(const char *what) {
  perror(what);
  exit(2);
}

static char *read_file(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) die(path);
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (n == cap) buf = realloc(buf, cap *= 2);
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0) die("read");
    if (r == 0) break;
    n += (size_t)r;
  }
  close(fd);
  buf = realloc(buf, n + 1);
  buf[n] = 0;
  *len = n;
  return buf;
}

static char *base64(const char *in, size_t n) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned char)in[i] << 16;
    if (i + 1 < n) v |= (unsigned char)in[i + 1] << 8;
    if (i + 2 < n) v |= (unsigned char)in[i + 2];
    *o++ = tbl[(v >> 18) & 63];
    *o++ = tbl[(v >> 12) & 63];
    *o++ = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    *o++ = i + 2 < n ? tbl[v & 63] : '=';
  }
  *o = 0;
  return out;
}

// The value of "key": in a JSON text, copied into out (strings unquoted, numbers as written).
static int json_field(const char *text, const char *key, char *out, size_t cap) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\"", key);
  const char *p = strstr(text, pat);
  if (!p) return 0;
  p += strlen(pat);
  while (*p == ' ' || *p == ':') p++;
  int quoted = *p == '"';
  if (quoted) p++;
  size_t n = 0;
  while (*p && n + 1 < cap && (quoted ? *p != '"' : (*p != ',' && *p != '}' && *p != ' '))) out[n++] = *p++;
  out[n] = 0;
  return 1;
}

static void report(int ok, long long us, const char *reply) {
  char line[512];
  int n;
  if (ok) {
    char ip[128] = "?";
    json_field(reply, "address", ip, sizeof ip);
    n = snprintf(line, sizeof line, "ok %lld %s\n", us, ip);
  } else {
    char code[32] = "-1";
    json_field(reply, "code", code, sizeof code);
    char head[300];
    size_t k = 0;
    for (const char *p = reply; *p && k + 1 < sizeof head; p++) head[k++] = (*p == '\n' || *p == '\r') ? ' ' : *p;
    head[k] = 0;
    n = snprintf(line, sizeof line, "err %lld %s %s\n", us, code, head);
  }
  if (n > (int)sizeof line - 1) {
    n = sizeof line - 1;
    line[n - 1] = '\n';
  }
  if (write(1, line, (size_t)n) < 0) exit(3);
}

// One call over the socket; the reply's body into *body (malloc'd); the HTTP status, or -1.
static int wire_call(const char *sock, char **envs, int nenv, char **body) {
  size_t cap = config_len * 2 + 4096;
  for (int i = 0; i < nenv; i++) cap += strlen(envs[i]) + 8;
  char *json = malloc(cap);
  size_t n = (size_t)snprintf(json, cap, "{\"env\":{");
  for (int i = 0; i < nenv; i++) {
    const char *eq = strchr(envs[i], '=');
    n += (size_t)snprintf(json + n, cap - n, "%s\"%.*s\":\"%s\"", i ? "," : "", (int)(eq - envs[i]), envs[i],
                          eq + 1);
  }
  n += (size_t)snprintf(json + n, cap - n, "},\"config\":\"%s\"}", config_b64);
  char head[512];
  int hn = snprintf(head, sizeof head,
                    "POST /cni HTTP/1.1\r\nHost: cni-kit\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\nX-Cni-Kit-Shim: 1\r\nX-Cni-Kit-Plugin: whereabouts\r\n"
                    "Connection: close\r\n\r\n",
                    n);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, sock, sizeof a.sun_path - 1);
  *body = NULL;
  int status = -1;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    *body = strdup(strerror(errno));
    close(fd);
    free(json);
    return -1;
  }
  if (write(fd, head, (size_t)hn) != hn || write(fd, json, n) != (ssize_t)n) {
    *body = strdup("write failed");
    close(fd);
    free(json);
    return -1;
  }
  free(json);
  size_t rcap = 8192, rn = 0;
  char *r = malloc(rcap);
  for (;;) {
    if (rn + 1 >= rcap) r = realloc(r, rcap *= 2);
    ssize_t k = read(fd, r + rn, rcap - rn - 1);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    rn += (size_t)k;
  }
  close(fd);
  r[rn] = 0;
  if (sscanf(r, "HTTP/1.%*d %d", &status) != 1) status = -1;
  char *b = strstr(r, "\r\n\r\n");
  *body = strdup(b ? b + 4 : r);
  free(r);
  return status;
}

// One exec of the shim, the config on its stdin; its stdout into *out; the exit status or -1.
static int exec_call(const char *shim, char **envs, char **out) {
  int in[2], o[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(o, O_CLOEXEC)) die("pipe");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(o[1], 1);
    char *argv[] = {(char *)shim, NULL};
    execve(shim, argv, envs);
    _exit(127);
  }
  close(in[0]);
  close(o[1]);
  // Configs are small (under the pipe's 64 KiB), so writing all before reading cannot deadlock.
  if (write(in[1], config, config_len) < 0) { /* the shim reports a short stdin itself */
  }
  close(in[1]);
  size_t cap = 8192, n = 0;
  char *r = malloc(cap);
  for (;;) {
    if (n + 1 >= cap) r = realloc(r, cap *= 2);
    ssize_t k = read(o[0], r + n, cap - n - 1);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    n += (size_t)k;
  }
  close(o[0]);
  r[n] = 0;
  *out = r;
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(int argc, char **argv) {
  if (argc < 7 || (strcmp(argv[1], "wire") && strcmp(argv[1], "exec"))) {
    fprintf(stderr, "usage: wb-load wire|exec <socket|shim> <clients> <per> <tag> <config file> [NAME=VALUE ...]\n");
    return 2;
  }
  int wire = !strcmp(argv[1], "wire");
  const char *target = argv[2];
  int clients = atoi(argv[3]), per = atoi(argv[4]);
  const char *tag = argv[5];
  config = read_file(argv[6], &config_len);
  config_b64 = base64(config, config_len);
  int extra = argc - 7;
  for (int w = 0; w < clients; w++) {
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid) continue;
    // env: CNI_COMMAND, CNI_CONTAINERID, CNI_IFNAME, CNI_ARGS, then the extra pairs; NULL-ended.
    char **envs = calloc((size_t)extra + 8, sizeof *envs);
    char cid[256], args[512];
    envs[0] = "CNI_COMMAND=ADD";
    envs[1] = cid;
    envs[2] = "CNI_IFNAME=eth0";
    envs[3] = args;
    for (int i = 0; i < extra; i++) envs[4 + i] = argv[7 + i];
    int nenv = 4 + extra;
    for (int j = 0; j < per; j++) {
      snprintf(cid, sizeof cid, "CNI_CONTAINERID=%s-%d-%d", tag, w, j);
      snprintf(args, sizeof args, "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=%s-%d-%d", tag,
               w, j);
      char *reply = NULL;
      long long t0 = now_us();
      int ok;
      if (wire) {
        int st = wire_call(target, envs, nenv, &reply);
        ok = st == 200;
      } else {
        ok = exec_call(target, envs, &reply) == 0;
      }
      report(ok, now_us() - t0, reply ? reply : "");
      free(reply);
    }
    _exit(0);
  }
  int st, bad = 0;
  while (wait(&st) > 0)
    if (!WIFEXITED(st) || WEXITSTATUS(st)) bad++;
  return bad ? 1 : 0;
}
