/* Test guest workload `diskbench pattern=randread|randwrite|seqread|seqwrite
 * bs=4k..1m qd=N secs=S`: a throughput test of the virtio-blk device. CPU 0
 * keeps qd requests of bs bytes in flight in one queue (each request is one
 * 3-descriptor chain: header, one bs-byte data descriptor, status) for secs
 * seconds from the workload start, then waits for the requests in flight and
 * prints one DISKBENCH line and powers off. rand*: 4 KiB-aligned offsets
 * over the whole disk from a splitmix64 sequence; seq*: consecutive bs
 * blocks from sector 0, wrapping at the end. Writes write a fixed pattern;
 * reads verify nothing. Any request with a non-zero status counts in errs. */
#include "virtio_blk.h"

extern char tg_image_end[];

static struct {
    struct vblk dev;
    struct mon m;
    u64 ios, bytes, rng, next_sector;
} db;

static u64 mix64(u64 z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
    return z ^ (z >> 31);
}

static void hb(void)
{
    char extra[48];
    fmt(extra, sizeof(extra), " ios=%lu", db.ios);
    mon_hb(&db.m, extra);
}

/* Buffers: qd * bs bytes of RAM right above the image (2 MiB-aligned), the
 * same free RAM the `dirty` workload uses. */
static u8 *buffers(u64 need)
{
    u64 floor = ((u64)tg_image_end + 0x1fffff) & ~0x1fffffUL;
    for (int i = 0; i < tg_nmemmap; i++) {
        struct memrange *r = &tg_memmap[i];
        if (r->type == 1 && r->base <= floor && floor + need <= r->base + r->size)
            return (u8 *)floor;
    }
    upanic("diskbench: no %lu bytes of RAM at 0x%lx for the buffers", need, floor);
}

static u64 next_sector(u64 sectors, u64 bs_sectors)
{
    if (cfg.pattern == P_RANDREAD || cfg.pattern == P_RANDWRITE) {
        u64 blocks = (sectors - bs_sectors) / 8 + 1;    /* 4 KiB-aligned starts that fit */
        db.rng += 0x9e3779b97f4a7c15UL;
        return (mix64(db.rng) % blocks) * 8;
    }
    if (db.next_sector + bs_sectors > sectors)
        db.next_sector = 0;
    u64 s = db.next_sector;
    db.next_sector += bs_sectors;
    return s;
}

NORETURN void work_diskbench(u32 cpu)
{
    mon_init(&db.m, cpu);
    db.m.deadline = 0;                      /* secs is handled here, from the workload start */
    u32 qd = (u32)cfg.qd, bs = (u32)cfg.bs, bs_sectors = bs / 512;
    if (!vblk_init_queue(&db.dev, 256))
        upanic("diskbench: no virtio-blk device (virtio-mmio version 2)");
    if ((u32)db.dev.qsize < qd * 3)
        upanic("diskbench: qd=%u needs %u queue entries, the device gives %u", qd, qd * 3, db.dev.qsize);
    if (db.dev.capacity < bs_sectors)
        upanic("diskbench: the disk (%lu sectors) is smaller than bs=%u", db.dev.capacity, bs);
    u32 type = cfg.pattern == P_RANDWRITE || cfg.pattern == P_SEQWRITE ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
    u8 *buf = buffers((u64)qd * bs);
    u64 *w = (u64 *)buf;
    for (u64 i = 0; i < (u64)qd * bs / 8; i++)
        w[i] = mix64(i ^ 0x5442534b49444754UL);     /* the write pattern */
    db.rng = 0x243f6a8885a308d3UL;

    u64 t0 = rdtsc(), end = t0 + cfg.secs * db.m.sec;
    for (u16 s = 0; s < qd; s++)
        vblk_submit(&db.dev, s, type, next_sector(db.dev.capacity, bs_sectors), buf + (u64)s * bs, bs);
    vblk_kick(&db.dev);
    u32 inflight = qd;
    int stopping = 0;
    while (inflight) {
        u16 slot;
        int st, n = 0;
        while (vblk_reap(&db.dev, &slot, &st)) {
            inflight--;
            db.ios++;
            if (st)
                db.m.errs++;
            else
                db.bytes += bs;
            if (!stopping) {
                vblk_submit(&db.dev, slot, type, next_sector(db.dev.capacity, bs_sectors), buf + (u64)slot * bs, bs);
                inflight++;
                n++;
            }
        }
        if (n)
            vblk_kick(&db.dev);
        if (mon_poll(&db.m))
            hb();
        if (cfg.secs && !stopping && rdtsc() >= end)
            stopping = 1;
        cpu_relax();
    }
    u64 ms = (rdtsc() - t0) / tg.tsc_khz;
    uprintf("DISKBENCH pattern=%s bs=%u qd=%u ios=%lu bytes=%lu ms=%lu errs=%lu\n", bench_patterns[cfg.pattern],
            bs, qd, db.ios, db.bytes, ms, db.m.errs);
    upoweroff();
}
