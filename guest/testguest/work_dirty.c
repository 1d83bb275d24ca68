/* Test guest workload `dirty mib=N [rate=MiB/s] [fill=mixed|random|text|zeros] [same_ms=T]`:
 * a self-checking working set. Each CPU owns an even slice of N MiB of free
 * RAM; it writes every page once (generation 1), then forever verifies each
 * page and rewrites it with generation+1. What a page holds besides its
 * header (fill=): mixed, half pseudo-random and half a 64-byte cycle (lz4
 * halves it); random, all pseudo-random (incompressible); text, all the
 * cycle (compresses ~50:1); zeros, three pages in four all zero (verified
 * zero), the fourth mixed. same_ms=T: every other period of T ms, each pass
 * rewrites every page with the bytes it already holds (no new generation);
 * the kind of pass is chosen as a pass begins, and a change is printed.
 * Page format: see docs/test-guest.md. */
#include "user.h"

#define PAGE_WORDS 512
#define DIRTY_MAGIC 0x3159545249445654UL        /* "TVDIRTY1" */
#define MAX_EXT 16
#define MAX_CORRUPT_LINES 32

extern char tg_image_end[];

struct ext {
    u64 gpa, first, count;                      /* count pages from global index first */
};

struct dirty {
    struct mon m;
    struct ext ext[MAX_EXT];
    int next;
    u64 gen, pages_since, t_since, corrupt_lines;
    u64 rate_pps, tokens, t_tok, burst;         /* token bucket, in page * TSC-ticks/s units */
};

static u64 rotl(u64 x, int r) { return (x << r) | (x >> (64 - r)); }

static u64 mix64(u64 z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
    return z ^ (z >> 31);
}

/* 4-lane multiply-rotate hash over words 0..2 and 4..511 (word 3 holds it) */
static u64 page_sum(const u64 *p)
{
    const u64 k1 = 0x9e3779b185ebca87UL, k2 = 0xc2b2ae3d27d4eb4fUL;
    u64 a = 0x243f6a8885a308d3UL ^ p[0], b = 0x13198a2e03707344UL ^ p[1];
    u64 c = 0xa4093822299f31d0UL ^ p[2], d = 0x082efa98ec4e6c89UL;
    for (int i = 4; i < PAGE_WORDS; i += 4) {
        a = rotl(a + p[i] * k2, 31) * k1;
        b = rotl(b + p[i + 1] * k2, 31) * k1;
        c = rotl(c + p[i + 2] * k2, 31) * k1;
        d = rotl(d + p[i + 3] * k2, 31) * k1;
    }
    return mix64(rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18));
}

/* fill=zeros: the pages that stay all zero */
static int zero_page(u64 idx) { return cfg.fill == F_ZEROS && (idx & 3) != 0; }

static void page_fill(u64 *p, u64 idx, u64 gen)
{
    if (zero_page(idx)) {
        for (int i = 0; i < PAGE_WORDS; i++)
            p[i] = 0;
        return;
    }
    u64 seed = mix64(idx * 0x9e3779b97f4a7c15UL ^ gen);
    int random_to = cfg.fill == F_RANDOM ? PAGE_WORDS : cfg.fill == F_TEXT ? 4 : PAGE_WORDS / 2;
    p[0] = DIRTY_MAGIC;
    p[1] = idx;
    p[2] = gen;
    for (int i = 4; i < random_to; i++)         /* pseudo-random part */
        p[i] = mix64(seed + (u64)i);
    for (int i = random_to; i < PAGE_WORDS; i++)        /* structured part: 64-byte cycle */
        p[i] = seed ^ (u64)(i & 7);
    p[3] = page_sum(p);
}

/* Whether the page holds what page_fill(idx, gen) wrote. */
static int page_ok(const u64 *p, u64 idx, u64 gen)
{
    if (zero_page(idx)) {
        u64 acc = 0;
        for (int i = 0; i < PAGE_WORDS; i++)
            acc |= p[i];
        return acc == 0;
    }
    return p[0] == DIRTY_MAGIC && p[1] == idx && p[2] == gen && p[3] == page_sum(p);
}

/* Assign global page indices 0..pages-1 over free RAM above the image and
 * keep the part [lo, hi) that belongs to this CPU. */
static void build_slice(struct dirty *d, u64 lo, u64 hi)
{
    u64 floor = ((u64)tg_image_end + 0x1fffff) & ~0x1fffffUL;
    u64 idx = 0;
    int n = 0;
    for (int i = 0; i < tg_nmemmap && idx < hi; i++) {
        struct memrange *r = &tg_memmap[i];
        if (r->type != 1)
            continue;
        u64 b = r->base > floor ? r->base : floor;
        u64 e = r->base + r->size;
        u64 top = (u64)TG_MAPPED_GIB << 30;
        b = (b + 4095) & ~4095UL;
        e = (e < top ? e : top) & ~4095UL;
        if (e <= b)
            continue;
        u64 cnt = (e - b) >> 12, s = idx, t = idx + cnt;   /* this range holds [s, t) */
        u64 from = s > lo ? s : lo, to = t < hi ? t : hi;
        if (from < to && n < MAX_EXT)
            d->ext[n++] = (struct ext){b + ((from - s) << 12), from, to - from};
        idx = t;
    }
    if (idx < hi)
        upanic("dirty mib=%lu exceeds free RAM (%lu MiB above the image)", cfg.mib, idx >> 8);
    d->next = n;
}

static void dirty_hb(struct dirty *d)
{
    char extra[64];
    u64 now = rdtsc();
    u64 pps = now > d->t_since ? d->pages_since * d->m.sec / (now - d->t_since) : 0;
    fmt(extra, sizeof(extra), " gen=%lu pps=%lu", d->gen, pps);
    mon_hb(&d->m, extra);
    d->pages_since = 0;
    d->t_since = now;
}

static void tick(struct dirty *d)
{
    if (mon_poll(&d->m))
        dirty_hb(d);
}

static void rate_wait(struct dirty *d)
{
    for (;;) {
        u64 now = rdtsc();
        d->tokens += (now - d->t_tok) * d->rate_pps;
        d->t_tok = now;
        if (d->tokens > d->burst)
            d->tokens = d->burst;
        if (d->tokens >= d->m.sec) {
            d->tokens -= d->m.sec;
            return;
        }
        /* more than 15 ms until the next page is allowed: sleep a tick */
        if ((d->m.sec - d->tokens) / d->rate_pps > tg.tsc_khz * 15)
            gate0(G_HALT);
        else
            cpu_relax();
        tick(d);
    }
}

static void corrupt(struct dirty *d, const u64 *p, u64 idx, u64 gen)
{
    d->m.errs++;
    if (d->corrupt_lines++ >= MAX_CORRUPT_LINES)
        return;
    uprintf("CORRUPT cpu=%u page=%lu gpa=0x%lx want_gen=%lu got_gen=%lu got_page=%lu magic=%s sum=%s\n",
            d->m.cpu, idx, (u64)p, gen, p[2], p[1], p[0] == DIRTY_MAGIC ? "ok" : "bad",
            p[3] == page_sum(p) ? "ok" : "bad");
}

NORETURN void work_dirty(u32 cpu)
{
    static struct dirty all[TG_MAX_CPUS];
    struct dirty *d = &all[cpu];
    if (!cfg.mib)
        upanic("dirty needs mib=N");
    u64 pages = cfg.mib << 8, n = tg.ncpus;
    build_slice(d, pages * cpu / n, pages * (cpu + 1) / n);
    mon_init(&d->m, cpu);
    d->gen = 1;
    d->t_since = d->t_tok = rdtsc();
    d->rate_pps = cfg.rate << 8;
    d->burst = d->m.sec * (d->rate_pps / 10 + 1);       /* 100 ms worth */
    for (int e = 0; e < d->next; e++) {
        for (u64 i = 0; i < d->ext[e].count; i++) {
            page_fill((u64 *)(d->ext[e].gpa + (i << 12)), d->ext[e].first + i, 1);
            d->pages_since++;
            tick(d);
        }
    }
    const u64 t0 = rdtsc(), period = tg.tsc_khz * cfg.same_ms;
    int was_same = 0;
    for (;;) {
        int same = period && ((rdtsc() - t0) / period) % 2 == 1;
        if (same != was_same)                   /* a pass of the other kind begins */
            uprintf("DIRTY cpu=%u same=%d gen=%lu\n", d->m.cpu, same, d->gen);
        was_same = same;
        u64 gen = same ? d->gen : ++d->gen, was = same ? gen : gen - 1;
        for (int e = 0; e < d->next; e++) {
            for (u64 i = 0; i < d->ext[e].count; i++) {
                u64 *p = (u64 *)(d->ext[e].gpa + (i << 12));
                u64 idx = d->ext[e].first + i;
                if (d->rate_pps)
                    rate_wait(d);
                if (!page_ok(p, idx, was))
                    corrupt(d, p, idx, was);
                page_fill(p, idx, gen);
                d->pages_since++;
                tick(d);
            }
        }
    }
}
