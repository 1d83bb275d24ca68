/* Test guest workload `disk [slots=N] [rate=R]`: numbered 4 KiB records in
 * a ring of slots; resume after the highest valid record, then forever:
 * write, FLUSH, read back, verify. Record format: docs/test-guest.md. */
#include "virtio_blk.h"

#define DISK_MAGIC 0x31304b5349444754UL     /* "TGDISK01" */
#define MAX_SLOTS 65536
#define MAX_CORRUPT_LINES 32

static struct {
    struct vblk dev;
    struct mon m;
    u64 acked;                              /* last record whose FLUSH completed */
    u64 corrupt_lines;
} dk;
static u64 wbuf[512] ALIGNED(4096), rbuf[512] ALIGNED(4096);
static u64 slot_seq[MAX_SLOTS];             /* seq found in each slot at boot, 0 = none */

static u64 mix64(u64 z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
    return z ^ (z >> 31);
}

/* hash over every word except word 2, which holds it */
static u64 rec_sum(const u64 *r)
{
    u64 h = 0x6a09e667f3bcc908UL;
    for (int i = 0; i < 512; i++)
        if (i != 2)
            h = mix64(h ^ r[i]) + (u64)i;
    return h;
}

static void rec_build(u64 *r, u64 seq)
{
    u64 seed = mix64(seq * 0x9e3779b97f4a7c15UL);
    r[0] = DISK_MAGIC;
    r[1] = seq;
    r[3] = (cfg.slots << 32) | (seq % cfg.slots);
    for (int i = 4; i < 512; i++)
        r[i] = mix64(seed + (u64)i);
    r[2] = rec_sum(r);
}

/* seq of a valid record for this slot, else 0 */
static u64 rec_check(const u64 *r, u64 slot)
{
    if (r[0] != DISK_MAGIC || r[1] == 0 || r[1] % cfg.slots != slot || r[3] != ((cfg.slots << 32) | slot))
        return 0;
    return r[2] == rec_sum(r) ? r[1] : 0;
}

static void hb(void)
{
    char extra[40];
    fmt(extra, sizeof(extra), " rec=%lu", dk.acked);
    mon_hb(&dk.m, extra);
}

static void poll(void)
{
    if (mon_poll(&dk.m))
        hb();
    cpu_relax();
}

static void corrupt(u64 slot, u64 want, u64 got, const char *why)
{
    dk.m.errs++;
    if (dk.corrupt_lines++ < MAX_CORRUPT_LINES)
        uprintf("CORRUPT cpu=%u disk slot=%lu sector=%lu want_seq=%lu got_seq=%lu why=%s\n", dk.m.cpu, slot,
                slot * 8, want, got, why);
}

/* One request; on an I/O error count it, report it, wait 100 ms, fail. */
static int io(u32 type, u64 slot, void *buf, u64 seq)
{
    int st = vblk_io(&dk.dev, type, slot * 8, buf, poll);
    if (st == 0)
        return 1;
    static const char *const names[] = {"read", "write", "?", "?", "flush"};
    dk.m.errs++;
    uprintf("DISK ioerr op=%s seq=%lu slot=%lu status=%d\n", names[type], seq, slot, st);
    u64 t0 = rdtsc();
    while (rdtsc() - t0 < tg.tsc_khz * 100)
        poll();
    return 0;
}

static u64 resume(void)
{
    u64 last = 0, valid = 0;
    for (u64 s = 0; s < cfg.slots; s++) {
        while (!io(VIRTIO_BLK_T_IN, s, rbuf, 0))
            ;
        slot_seq[s] = rec_check(rbuf, s);
        valid += slot_seq[s] != 0;
        if (slot_seq[s] > last)
            last = slot_seq[s];
    }
    uprintf("DISK resume last=%lu valid=%lu%s\n", last, valid, last ? "" : " fresh");
    u64 first = last >= cfg.slots ? last - cfg.slots + 1 : 1;
    for (u64 q = first; last && q <= last; q++)
        if (slot_seq[q % cfg.slots] != q)
            corrupt(q % cfg.slots, q, slot_seq[q % cfg.slots], slot_seq[q % cfg.slots] ? "stale" : "invalid");
    return last;
}

NORETURN void work_disk(u32 cpu)
{
    mon_init(&dk.m, cpu);
    if (cfg.slots > MAX_SLOTS)
        upanic("disk: slots=%lu exceeds %u", cfg.slots, MAX_SLOTS);
    if (!vblk_init(&dk.dev))
        upanic("disk: no virtio-blk device (virtio-mmio version 2)");
    uprintf("DISK device base=0x%lx sectors=%lu slots=%lu\n", dk.dev.base, dk.dev.capacity, cfg.slots);
    if (dk.dev.capacity < cfg.slots * 8)
        upanic("disk: %lu sectors is too small for slots=%lu", dk.dev.capacity, cfg.slots);
    dk.acked = resume();
    u64 period = cfg.rate ? dk.m.sec / cfg.rate : 0, next = rdtsc();
    for (u64 seq = dk.acked + 1;;) {
        if (period) {
            while (rdtsc() < next) {
                if (next - rdtsc() > tg.tsc_khz * 15)
                    gate0(G_HALT);
                poll();
            }
            next += period;
            if (next + dk.m.sec < rdtsc())  /* far behind (VM paused): no burst */
                next = rdtsc();
        }
        u64 slot = seq % cfg.slots;
        rec_build(wbuf, seq);
        if (!io(VIRTIO_BLK_T_OUT, slot, wbuf, seq) || !io(VIRTIO_BLK_T_FLUSH, 0, NULL, seq))
            continue;
        dk.acked = seq;
        if (!io(VIRTIO_BLK_T_IN, slot, rbuf, seq))
            continue;
        if (memcmp(wbuf, rbuf, sizeof(wbuf)))
            corrupt(slot, seq, rbuf[1], rec_check(rbuf, slot) ? "stale" : "invalid");
        poll();
        seq++;
    }
}
