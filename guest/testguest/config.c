/* Test guest: parse the command line. "<workload> key=value ...".
 * Problems are recorded in cfg.error and reported after the boot line. */
#include "user.h"

#define IP_DEFAULT_PREFIX 24

struct config cfg = {.wl = W_IDLE, .wl_name = "idle", .stall_ms = 50, .slots = 256, .bs = 4096, .qd = 1,
                     .prefix = IP_DEFAULT_PREFIX};

static const char *const workloads[] = {
    [W_IDLE] = "idle", [W_DIRTY] = "dirty", [W_DISK] = "disk", [W_CPUID] = "cpuid", [W_CPUID3] = "cpuid3",
    [W_POWEROFF] = "poweroff", [W_REBOOT] = "reboot", [W_PANIC] = "panic", [W_DISKBENCH] = "diskbench",
    [W_CHATTER] = "chatter", [W_ECHO] = "echo", [W_NET] = "net",
};

const char *const bench_patterns[4] = {
    [P_RANDREAD] = "randread", [P_RANDWRITE] = "randwrite", [P_SEQREAD] = "seqread", [P_SEQWRITE] = "seqwrite",
};

const char *const dirty_fills[4] = {
    [F_MIXED] = "mixed", [F_RANDOM] = "random", [F_TEXT] = "text", [F_ZEROS] = "zeros",
};

static void error(const char *what, const char *w, usize n)
{
    if (cfg.error[0])
        return;
    int k = fmt(cfg.error, sizeof(cfg.error), "%s ", what);
    for (usize i = 0; i < n && k < (int)sizeof(cfg.error) - 1; i++)
        cfg.error[k++] = w[i];
    cfg.error[k] = 0;
}

static int is_space(char c) { return c == ' '; }

/* number with optional 0x prefix and K/M/G suffix; returns end or NULL */
static const char *parse_num(const char *s, const char *end, u64 *out)
{
    u64 v = 0;
    unsigned base = 10;
    if (end - s > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    const char *start = s;
    for (; s < end; s++) {
        char c = *s;
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            break;
        v = v * base + d;
    }
    if (s == start)
        return NULL;
    if (s < end && (*s == 'K' || *s == 'k'))
        v <<= 10, s++;
    else if (s < end && (*s == 'M' || *s == 'm'))
        v <<= 20, s++;
    else if (s < end && (*s == 'G' || *s == 'g'))
        v <<= 30, s++;
    *out = v;
    return s;
}

/* virtio_mmio.device=<size>@<base>:<irq>[:<id>] */
static void parse_vmmio(const char *v, const char *end, const char *w)
{
    u64 size, base;
    const char *p = parse_num(v, end, &size);
    if (!p || p >= end || *p != '@' || !(p = parse_num(p + 1, end, &base))) {
        error("bad value", w, (usize)(end - w));
        return;
    }
    if (cfg.nvmmio < TG_MAX_VMMIO)
        cfg.vmmio[cfg.nvmmio++] = base;
}

/* A.B.C.D[/N], each part decimal: 1 if well formed. */
static int parse_ip(const char *v, const char *end)
{
    u64 part, ip = 0, prefix = IP_DEFAULT_PREFIX;
    for (int i = 0; i < 4; i++) {
        if (i && (v >= end || *v++ != '.'))
            return 0;
        if (v >= end || *v < '0' || *v > '9' || !(v = parse_num(v, end, &part)) || part > 255)
            return 0;
        ip = ip << 8 | part;
    }
    if (v < end && *v == '/' && (!(v = parse_num(v + 1, end, &prefix)) || prefix < 1 || prefix > 32))
        return 0;
    if (v != end || ip == 0)
        return 0;
    cfg.ip = (u32)ip;
    cfg.prefix = (u32)prefix;
    return 1;
}

static int linux_word(const char *w, usize n, usize keylen)
{
    static const char *const prefixes[] = {"console=", "earlyprintk", "reboot=", "panic=", "quiet"};
    for (usize i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        usize pl = strlen(prefixes[i]);
        if (n >= pl && !strncmp(w, prefixes[i], pl))
            return 1;
    }
    for (usize i = 0; i < keylen; i++)      /* module.param=value */
        if (w[i] == '.')
            return 1;
    return 0;
}

/* The index of the n bytes at v in names[0..count), or -1. */
static int named_value(const char *v, usize n, const char *const *names, usize count)
{
    for (usize i = 0; i < count; i++)
        if (strlen(names[i]) == n && !strncmp(v, names[i], n))
            return (int)i;
    return -1;
}

static void option(const char *w, usize n)
{
    static const struct { const char *key; u64 *val; } keys[] = {
        {"secs", &cfg.secs}, {"stall_ms", &cfg.stall_ms}, {"mib", &cfg.mib},
        {"rate", &cfg.rate}, {"slots", &cfg.slots}, {"bs", &cfg.bs}, {"qd", &cfg.qd},
        {"same_ms", &cfg.same_ms},
    };
    usize kl = 0;
    while (kl < n && w[kl] != '=')
        kl++;
    if (kl == 18 && !strncmp(w, "virtio_mmio.device", 18) && kl < n) {
        parse_vmmio(w + 19, w + n, w);
        return;
    }
    if (linux_word(w, n, kl))
        return;
    int v;
    if (kl == 7 && !strncmp(w, "pattern", 7) && kl < n) {
        if ((v = named_value(w + 8, n - 8, bench_patterns, 4)) < 0)
            error("bad value", w, n);
        else
            cfg.pattern = (enum bench_pattern)v;
        return;
    }
    if (kl == 2 && !strncmp(w, "ip", 2) && kl < n) {
        if (!parse_ip(w + 3, w + n))
            error("bad value", w, n);
        return;
    }
    if (kl == 4 && !strncmp(w, "fill", 4) && kl < n) {
        if ((v = named_value(w + 5, n - 5, dirty_fills, 4)) < 0)
            error("bad value", w, n);
        else
            cfg.fill = (enum dirty_fill)v;
        return;
    }
    for (usize i = 0; kl < n && i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strlen(keys[i].key) == kl && !strncmp(w, keys[i].key, kl)) {
            const char *e = parse_num(w + kl + 1, w + n, keys[i].val);
            if (!e || e != w + n)
                error("bad value", w, n);
            return;
        }
    }
    error("unknown option", w, n);
}

void config_parse(const char *s)
{
    int have_wl = 0;
    while (*s) {
        while (is_space(*s))
            s++;
        const char *w = s;
        while (*s && !is_space(*s))
            s++;
        usize n = (usize)(s - w);
        if (!n)
            break;
        int has_eq = 0;
        for (usize i = 0; i < n; i++)
            has_eq |= w[i] == '=';
        if (!have_wl && !has_eq && !linux_word(w, n, 0)) {
            have_wl = 1;
            usize i;
            for (i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
                if (strlen(workloads[i]) == n && !strncmp(w, workloads[i], n))
                    break;
            if (i == sizeof(workloads) / sizeof(workloads[0])) {
                error("unknown workload", w, n);
                cfg.wl_name = "unknown";
            } else {
                cfg.wl = (enum workload)i;
                cfg.wl_name = workloads[i];
            }
            continue;
        }
        have_wl = 1;
        option(w, n);
    }
    if (cfg.slots == 0)
        error("bad value", "slots=0", 7);
    if (cfg.bs == 0 || cfg.bs % 4096 || cfg.bs > (1u << 20))
        error("bad value", "bs (4k..1m, a multiple of 4k)", 29);
    if (cfg.qd == 0 || cfg.qd > 64)
        error("bad value", "qd (1..64)", 10);
    if (cfg.wl == W_NET && !cfg.ip)
        error("missing option", "ip=A.B.C.D[/N] (net)", 20);
    if (cfg.stall_ms == 0)
        cfg.stall_ms = 1;
}
