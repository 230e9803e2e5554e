/* sandbox_exec: install the seccomp filters a systemd unit describes, then
 * exec a program under them. The test unit_sandbox.sh derives every argument
 * from systemd/sockbroker.service; this program only knows how systemd 252
 * turns each setting into seccomp rules (src/shared/seccomp-util.c), so that
 * the broker meets the same kernel answers it would meet under PID 1.
 *
 * One filter per setting, stacked, as systemd loads them: the kernel then
 * takes the most restrictive answer of all of them. Every filter is for the
 * native ABI only (SystemCallArchitectures=native); a call from another ABI
 * (i386 int 0x80, x32) kills the process.
 *
 * Names libseccomp does not know are skipped, as systemd parses filter sets
 * permissively: a group may list calls newer than the library.
 *
 * no_new_privs is the caller's business (setpriv --no-new-privs for
 * NoNewPrivileges=yes): as systemd does, the filters are loaded without
 * libseccomp setting it, which needs CAP_SYS_ADMIN when it is not set. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *program_name = "sandbox_exec";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", program_name);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(125); /* as env(1) and timeout(1): "the launcher itself failed" */
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: %s [OPTION]... -- PROGRAM [ARG]...\n"
          "Install seccomp filters the way systemd 252 builds them from a unit's settings,\n"
          "then exec PROGRAM under them.\n"
          "\n"
          "  --allow FILE           SystemCallFilter= as an allow-list: system call names in FILE,\n"
          "                         one per line, are allowed; every other native call fails\n"
          "  --deny FILE            SystemCallFilter= as a deny-list (~...): the calls in FILE fail\n"
          "  --errno NAME|NUMBER    SystemCallErrorNumber=, e.g. EPERM; 'kill' (systemd's default\n"
          "                         without the setting) kills the process with SIGSYS\n"
          "  --protect FILE         calls the Protect*=/PrivateDevices= settings take away: each\n"
          "                         fails with EPERM, whatever --errno says\n"
          "  --address-families L   RestrictAddressFamilies= allow-list, comma-separated AF_ names:\n"
          "                         socket(2) of any other family fails with EAFNOSUPPORT\n"
          "  --namespaces L         RestrictNamespaces=: the namespace kinds (cgroup,ipc,net,mnt,pid,\n"
          "                         user,uts) that may be created or entered; 'none' for none\n"
          "  --memory-deny-write-execute   MemoryDenyWriteExecute=yes\n"
          "  --lock-personality     LockPersonality=yes\n"
          "  --restrict-realtime    RestrictRealtime=yes\n"
          "  --restrict-suid-sgid   RestrictSUIDSGID=yes\n"
          "\n"
          "Exits 125 if it cannot build or load a filter, 127 if PROGRAM cannot be executed.\n"
          "Example: %s --allow calls.txt --errno EPERM --namespaces net -- /usr/sbin/sockbrokerd\n",
          program_name, program_name);
}

/* The filter and the setting it stands for, for messages. */
struct filter {
  scmp_filter_ctx ctx;
  const char *setting;
};

static struct filter filter_new(uint32_t default_action, const char *setting) {
  struct filter f = {seccomp_init(default_action), setting};
  if (f.ctx == NULL) die("%s: seccomp_init failed", setting);
  /* A foreign ABI's numbers mean other calls: no rule here would apply. */
  int r = seccomp_attr_set(f.ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (r < 0) die("%s: seccomp_attr_set(ACT_BADARCH): %s", setting, strerror(-r));
  r = seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_NNP, 0);
  if (r < 0) die("%s: seccomp_attr_set(CTL_NNP): %s", setting, strerror(-r));
  return f;
}

static void filter_load(struct filter *f) {
  int r = seccomp_load(f->ctx);
  if (r < 0) die("%s: seccomp_load: %s (root without no_new_privs needs CAP_SYS_ADMIN)", f->setting, strerror(-r));
  seccomp_release(f->ctx);
  f->ctx = NULL;
}

/* Adds a rule for a call libseccomp may not know on this architecture (e.g.
 * mmap2, creat): unknown calls are skipped, as systemd does. */
static void rule(struct filter *f, uint32_t action, const char *call, unsigned argc, const struct scmp_arg_cmp *args) {
  int nr = seccomp_syscall_resolve_name(call);
  if (nr == __NR_SCMP_ERROR) return;
  int r = seccomp_rule_add_exact_array(f->ctx, action, nr, argc, args);
  /* -EDOM: a pseudo-number for a call this architecture lacks. */
  if (r == -EDOM) return;
  if (r < 0) die("%s: rule for %s: %s", f->setting, call, strerror(-r));
}

static void rule0(struct filter *f, uint32_t action, const char *call) { rule(f, action, call, 0, NULL); }
static void rule1(struct filter *f, uint32_t action, const char *call, struct scmp_arg_cmp a) {
  rule(f, action, call, 1, &a);
}
static void rule2(struct filter *f, uint32_t action, const char *call, struct scmp_arg_cmp a, struct scmp_arg_cmp b) {
  struct scmp_arg_cmp args[2] = {a, b};
  rule(f, action, call, 2, args);
}

static FILE *open_list(const char *path) {
  FILE *in = fopen(path, "re");
  if (in == NULL) die("cannot open %s: %s", path, strerror(errno));
  return in;
}

/* SystemCallFilter=: one name per line; blank lines and '#' comments skipped. */
static void add_list(struct filter *f, uint32_t action, const char *path) {
  FILE *in = open_list(path);
  char line[256];
  unsigned known = 0;
  while (fgets(line, sizeof line, in) != NULL) {
    char *name = line + strspn(line, " \t");
    name[strcspn(name, " \t\r\n")] = '\0';
    if (name[0] == '\0' || name[0] == '#') continue;
    if (name[0] == '@') die("%s: %s: expand the group first (systemd-analyze syscall-filter %s)", f->setting, path, name);
    if (seccomp_syscall_resolve_name(name) == __NR_SCMP_ERROR) continue;
    rule0(f, action, name);
    ++known;
  }
  if (ferror(in)) die("cannot read %s: %s", path, strerror(errno));
  fclose(in);
  if (known == 0) die("%s: %s names no system call this libseccomp knows", f->setting, path);
}

static int errno_by_name(const char *name) {
  char *end = NULL;
  errno = 0;
  long n = strtol(name, &end, 10);
  if (errno == 0 && end != name && *end == '\0' && n > 0 && n < 4096) return (int)n;
  for (int e = 1; e < 4096; ++e) {
    const char *known = strerrorname_np(e);
    if (known != NULL && strcmp(known, name) == 0) return e;
  }
  die("--errno: unknown error name \"%s\" (e.g. EPERM, EACCES, 1, kill)", name);
}

/* The address families glibc names; enough for RestrictAddressFamilies=. */
static const struct {
  const char *name;
  int family;
} kFamilies[] = {
    {"AF_UNIX", AF_UNIX},           {"AF_LOCAL", AF_LOCAL},         {"AF_INET", AF_INET},
    {"AF_AX25", AF_AX25},           {"AF_IPX", AF_IPX},             {"AF_APPLETALK", AF_APPLETALK},
    {"AF_NETROM", AF_NETROM},       {"AF_BRIDGE", AF_BRIDGE},       {"AF_ATMPVC", AF_ATMPVC},
    {"AF_X25", AF_X25},             {"AF_INET6", AF_INET6},         {"AF_ROSE", AF_ROSE},
    {"AF_DECnet", AF_DECnet},       {"AF_NETBEUI", AF_NETBEUI},     {"AF_SECURITY", AF_SECURITY},
    {"AF_KEY", AF_KEY},             {"AF_NETLINK", AF_NETLINK},     {"AF_PACKET", AF_PACKET},
    {"AF_ASH", AF_ASH},             {"AF_ECONET", AF_ECONET},       {"AF_ATMSVC", AF_ATMSVC},
    {"AF_RDS", AF_RDS},             {"AF_SNA", AF_SNA},             {"AF_IRDA", AF_IRDA},
    {"AF_PPPOX", AF_PPPOX},         {"AF_WANPIPE", AF_WANPIPE},     {"AF_LLC", AF_LLC},
    {"AF_IB", AF_IB},               {"AF_MPLS", AF_MPLS},           {"AF_CAN", AF_CAN},
    {"AF_TIPC", AF_TIPC},           {"AF_BLUETOOTH", AF_BLUETOOTH}, {"AF_IUCV", AF_IUCV},
    {"AF_RXRPC", AF_RXRPC},         {"AF_ISDN", AF_ISDN},           {"AF_PHONET", AF_PHONET},
    {"AF_IEEE802154", AF_IEEE802154}, {"AF_CAIF", AF_CAIF},         {"AF_ALG", AF_ALG},
    {"AF_NFC", AF_NFC},             {"AF_VSOCK", AF_VSOCK},         {"AF_KCM", AF_KCM},
    {"AF_QIPCRTR", AF_QIPCRTR},     {"AF_SMC", AF_SMC},             {"AF_XDP", AF_XDP},
    {"AF_MCTP", AF_MCTP},
};

/* RestrictAddressFamilies= as an allow-list (seccomp_restrict_address_families):
 * socket(2) below the lowest, above the highest and between listed families
 * fails with EAFNOSUPPORT. socketpair(2) is not filtered, as in systemd. */
static void restrict_address_families(const char *list) {
  bool allowed[AF_MAX + 1] = {false};
  char *copy = strdup(list);
  if (copy == NULL) die("out of memory");
  int first = INT_MAX, last = -1;
  for (char *save = NULL, *name = strtok_r(copy, ", ", &save); name != NULL; name = strtok_r(NULL, ", ", &save)) {
    int family = -1;
    for (size_t i = 0; i < sizeof kFamilies / sizeof kFamilies[0]; ++i) {
      if (strcmp(kFamilies[i].name, name) == 0) family = kFamilies[i].family;
    }
    if (family < 0) die("--address-families: unknown address family \"%s\"", name);
    allowed[family] = true;
    if (family < first) first = family;
    if (family > last) last = family;
  }
  free(copy);
  if (last < 0) die("--address-families: no family given (systemd's 'none' is not emulated)");

  struct filter f = filter_new(SCMP_ACT_ALLOW, "RestrictAddressFamilies=");
  const uint32_t refuse = SCMP_ACT_ERRNO(EAFNOSUPPORT);
  rule1(&f, refuse, "socket", SCMP_A0(SCMP_CMP_LT, (scmp_datum_t)first));
  rule1(&f, refuse, "socket", SCMP_A0(SCMP_CMP_GT, (scmp_datum_t)last));
  for (int af = first + 1; af < last; ++af) {
    if (!allowed[af]) rule1(&f, refuse, "socket", SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)af));
  }
  filter_load(&f);
}

static const struct {
  const char *name;
  unsigned long flag;
} kNamespaces[] = {
    {"cgroup", CLONE_NEWCGROUP}, {"ipc", CLONE_NEWIPC}, {"net", CLONE_NEWNET}, {"mnt", CLONE_NEWNS},
    {"pid", CLONE_NEWPID},       {"user", CLONE_NEWUSER}, {"uts", CLONE_NEWUTS},
};

/* RestrictNamespaces= (seccomp_restrict_namespaces): unshare(2), clone(2) and
 * setns(2) with the flag of a kind not retained fail with EPERM; setns with
 * nstype 0 (any kind) too, since the filter cannot see the kind; clone3(2),
 * whose flags a filter cannot read, fails with ENOSYS so that libc falls back
 * to clone(2). */
static void restrict_namespaces(const char *list) {
  unsigned long retain = 0, all = 0;
  for (size_t i = 0; i < sizeof kNamespaces / sizeof kNamespaces[0]; ++i) all |= kNamespaces[i].flag;
  if (strcmp(list, "none") != 0) {
    char *copy = strdup(list);
    if (copy == NULL) die("out of memory");
    for (char *save = NULL, *name = strtok_r(copy, ", ", &save); name != NULL; name = strtok_r(NULL, ", ", &save)) {
      unsigned long flag = 0;
      for (size_t i = 0; i < sizeof kNamespaces / sizeof kNamespaces[0]; ++i) {
        if (strcmp(kNamespaces[i].name, name) == 0) flag = kNamespaces[i].flag;
      }
      if (flag == 0) die("--namespaces: unknown namespace kind \"%s\"", name);
      retain |= flag;
    }
    free(copy);
  }
  if (retain == all) return; /* systemd installs nothing then */

  struct filter f = filter_new(SCMP_ACT_ALLOW, "RestrictNamespaces=");
  const uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
  rule0(&f, SCMP_ACT_ERRNO(ENOSYS), "clone3");
  if (retain == 0) {
    rule0(&f, refuse, "setns");
  } else {
    rule1(&f, refuse, "setns", SCMP_A1(SCMP_CMP_EQ, 0));
  }
  for (size_t i = 0; i < sizeof kNamespaces / sizeof kNamespaces[0]; ++i) {
    const unsigned long flag = kNamespaces[i].flag;
    if (retain & flag) continue;
    rule1(&f, refuse, "unshare", SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag));
    rule1(&f, refuse, "clone", SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag));
    if (retain != 0) rule1(&f, refuse, "setns", SCMP_A1(SCMP_CMP_MASKED_EQ, flag, flag));
  }
  filter_load(&f);
}

/* MemoryDenyWriteExecute=yes (seccomp_memory_deny_write_execute). */
static void memory_deny_write_execute(void) {
  struct filter f = filter_new(SCMP_ACT_ALLOW, "MemoryDenyWriteExecute=");
  const uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
  const scmp_datum_t wx = PROT_WRITE | PROT_EXEC;
  rule1(&f, refuse, "mmap", SCMP_A2(SCMP_CMP_MASKED_EQ, wx, wx));
  rule1(&f, refuse, "mmap2", SCMP_A2(SCMP_CMP_MASKED_EQ, wx, wx));
  rule1(&f, refuse, "mprotect", SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
  rule1(&f, refuse, "pkey_mprotect", SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
  rule1(&f, refuse, "shmat", SCMP_A2(SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC));
  filter_load(&f);
}

/* LockPersonality=yes (seccomp_lock_personality): any personality but the
 * current one fails with EPERM. systemd 252 compares with the current value
 * only, so even the query personality(0xffffffff) fails. */
static void lock_personality(void) {
  int current = personality(0xffffffff);
  if (current < 0) die("personality(query): %s", strerror(errno));
  struct filter f = filter_new(SCMP_ACT_ALLOW, "LockPersonality=");
  rule1(&f, SCMP_ACT_ERRNO(EPERM), "personality", SCMP_A0(SCMP_CMP_NE, (scmp_datum_t)current));
  filter_load(&f);
}

/* RestrictRealtime=yes (seccomp_restrict_realtime): scheduling policies other
 * than SCHED_OTHER, SCHED_BATCH and SCHED_IDLE fail with EPERM. */
static void restrict_realtime(void) {
  struct filter f = filter_new(SCMP_ACT_ALLOW, "RestrictRealtime=");
  const uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
  for (int policy = 0; policy < SCHED_IDLE; ++policy) {
    if (policy == SCHED_OTHER || policy == SCHED_BATCH) continue;
    rule1(&f, refuse, "sched_setscheduler", SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)policy));
  }
  rule1(&f, refuse, "sched_setscheduler", SCMP_A1(SCMP_CMP_GT, SCHED_IDLE));
  filter_load(&f);
}

/* RestrictSUIDSGID=yes (seccomp_restrict_suid_sgid): no call that sets a mode
 * may set S_ISUID or S_ISGID. */
static void restrict_suid_sgid(void) {
  struct filter f = filter_new(SCMP_ACT_ALLOW, "RestrictSUIDSGID=");
  const uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
  const scmp_datum_t bits[] = {S_ISUID, S_ISGID};
  for (size_t i = 0; i < 2; ++i) {
    const scmp_datum_t m = bits[i];
    rule1(&f, refuse, "chmod", SCMP_A1(SCMP_CMP_MASKED_EQ, m, m));
    rule1(&f, refuse, "fchmod", SCMP_A1(SCMP_CMP_MASKED_EQ, m, m));
    rule1(&f, refuse, "fchmodat", SCMP_A2(SCMP_CMP_MASKED_EQ, m, m));
    rule1(&f, refuse, "fchmodat2", SCMP_A2(SCMP_CMP_MASKED_EQ, m, m));
    rule1(&f, refuse, "mkdir", SCMP_A1(SCMP_CMP_MASKED_EQ, m, m));
    rule1(&f, refuse, "mkdirat", SCMP_A2(SCMP_CMP_MASKED_EQ, m, m));
    rule1(&f, refuse, "mknod", SCMP_A1(SCMP_CMP_MASKED_EQ, m, m));
    rule1(&f, refuse, "mknodat", SCMP_A2(SCMP_CMP_MASKED_EQ, m, m));
    rule1(&f, refuse, "creat", SCMP_A1(SCMP_CMP_MASKED_EQ, m, m));
    rule2(&f, refuse, "open", SCMP_A1(SCMP_CMP_MASKED_EQ, O_CREAT, O_CREAT), SCMP_A2(SCMP_CMP_MASKED_EQ, m, m));
    rule2(&f, refuse, "openat", SCMP_A2(SCMP_CMP_MASKED_EQ, O_CREAT, O_CREAT), SCMP_A3(SCMP_CMP_MASKED_EQ, m, m));
    rule2(&f, refuse, "open", SCMP_A1(SCMP_CMP_MASKED_EQ, O_TMPFILE, O_TMPFILE), SCMP_A2(SCMP_CMP_MASKED_EQ, m, m));
    rule2(&f, refuse, "openat", SCMP_A2(SCMP_CMP_MASKED_EQ, O_TMPFILE, O_TMPFILE), SCMP_A3(SCMP_CMP_MASKED_EQ, m, m));
  }
  filter_load(&f);
}

int main(int argc, char **argv) {
  enum { kAllow = 256, kDeny, kErrno, kProtect, kFamiliesOpt, kNamespacesOpt, kMdwe, kPersonality, kRealtime, kSuid };
  static const struct option options[] = {
      {"allow", required_argument, NULL, kAllow},
      {"deny", required_argument, NULL, kDeny},
      {"errno", required_argument, NULL, kErrno},
      {"protect", required_argument, NULL, kProtect},
      {"address-families", required_argument, NULL, kFamiliesOpt},
      {"namespaces", required_argument, NULL, kNamespacesOpt},
      {"memory-deny-write-execute", no_argument, NULL, kMdwe},
      {"lock-personality", no_argument, NULL, kPersonality},
      {"restrict-realtime", no_argument, NULL, kRealtime},
      {"restrict-suid-sgid", no_argument, NULL, kSuid},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *allow = NULL, *deny = NULL, *protect = NULL, *families = NULL, *namespaces = NULL;
  uint32_t filtered = SCMP_ACT_KILL_PROCESS; /* systemd's action without SystemCallErrorNumber= */
  bool mdwe = false, lock = false, realtime = false, suid = false;
  int c;
  while ((c = getopt_long(argc, argv, "+h", options, NULL)) != -1) {
    switch (c) {
      case kAllow: allow = optarg; break;
      case kDeny: deny = optarg; break;
      case kErrno: filtered = strcmp(optarg, "kill") == 0 ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_ERRNO(errno_by_name(optarg)); break;
      case kProtect: protect = optarg; break;
      case kFamiliesOpt: families = optarg; break;
      case kNamespacesOpt: namespaces = optarg; break;
      case kMdwe: mdwe = true; break;
      case kPersonality: lock = true; break;
      case kRealtime: realtime = true; break;
      case kSuid: suid = true; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 64;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return 64;
  }
  if (allow != NULL && deny != NULL) die("--allow and --deny: SystemCallFilter= is one or the other");

  /* The order systemd's exec_child applies them in; the last loaded is
   * consulted first, which only matters for which errno wins a tie. */
  if (families != NULL) restrict_address_families(families);
  if (mdwe) memory_deny_write_execute();
  if (realtime) restrict_realtime();
  if (suid) restrict_suid_sgid();
  if (namespaces != NULL) restrict_namespaces(namespaces);
  if (protect != NULL) {
    struct filter f = filter_new(SCMP_ACT_ALLOW, "Protect*=");
    add_list(&f, SCMP_ACT_ERRNO(EPERM), protect);
    filter_load(&f);
  }
  if (lock) lock_personality();
  if (allow != NULL || deny != NULL) {
    struct filter f = filter_new(allow != NULL ? filtered : SCMP_ACT_ALLOW, "SystemCallFilter=");
    add_list(&f, allow != NULL ? SCMP_ACT_ALLOW : filtered, allow != NULL ? allow : deny);
    filter_load(&f);
  } else {
    /* SystemCallArchitectures=native alone: a filter with no rules but the ABI check. */
    struct filter f = filter_new(SCMP_ACT_ALLOW, "SystemCallArchitectures=");
    filter_load(&f);
  }

  execvp(argv[optind], argv + optind);
  fprintf(stderr, "%s: cannot execute %s: %s\n", program_name, argv[optind], strerror(errno));
  return 127;
}
