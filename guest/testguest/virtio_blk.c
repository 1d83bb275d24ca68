/* Test guest: polling virtio-blk over virtio-mmio v2, in ring 3. */
#include "virtio_blk.h"

#define MINIHV_VIRTIO_BASE 0xd0000000UL     /* window i at base + i * 0x1000 */
#define MINIHV_VIRTIO_COUNT 8
#define MICROVM_VIRTIO_BASE 0xfeb00000UL    /* QEMU microvm: base + n * 0x200 */
#define MICROVM_VIRTIO_COUNT 32

enum {
    R_MAGIC = 0x000, R_VERSION = 0x004, R_DEVICE_ID = 0x008,
    R_DEV_FEAT = 0x010, R_DEV_FEAT_SEL = 0x014, R_DRV_FEAT = 0x020, R_DRV_FEAT_SEL = 0x024,
    R_QUEUE_SEL = 0x030, R_QUEUE_NUM_MAX = 0x034, R_QUEUE_NUM = 0x038, R_QUEUE_READY = 0x044,
    R_QUEUE_NOTIFY = 0x050, R_STATUS = 0x070,
    R_DESC_LO = 0x080, R_DESC_HI = 0x084, R_AVAIL_LO = 0x090, R_AVAIL_HI = 0x094,
    R_USED_LO = 0x0a0, R_USED_HI = 0x0a4, R_CONFIG = 0x100,
};
#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define F_BLK_FLUSH (1u << 9)               /* feature word 0 */
#define F_VERSION_1 (1u << 0)               /* feature word 1 (bit 32) */
#define D_NEXT 1
#define D_WRITE 2
#define QMAX 256                           /* storage; vblk_init uses 8 of it */
#define VBLK_SYNC_QSIZE 8
#define USED_F_NO_NOTIFY 1

struct desc { u64 addr; u32 len; u16 flags, next; };
struct avail { u16 flags, idx, ring[QMAX], event; };
struct used { volatile u16 flags; volatile u16 idx; struct { u32 id, len; } ring[QMAX]; u16 event; };
struct req { u32 type, rsv; u64 sector; };

static struct desc desc[QMAX] ALIGNED(4096);
static struct avail avail ALIGNED(4096);
static struct used used ALIGNED(4096);
static struct req req ALIGNED(64);
static volatile u8 status ALIGNED(64);
/* vblk_submit: request slot i owns descriptors 3i..3i+2, header areq[i], status astatus[i] */
static struct req areq[VBLK_MAX_SLOTS] ALIGNED(64);
static volatile u8 astatus[VBLK_MAX_SLOTS] ALIGNED(64);

static u32 rd(struct vblk *d, u32 r) { return mmio_rd32(d->base + r); }
static void wr(struct vblk *d, u32 r, u32 v) { mmio_wr32(d->base + r, v); }

static int probe(u64 base)
{
    if (addr_is_ram(base) || mmio_rd32(base + R_MAGIC) != 0x74726976 || mmio_rd32(base + R_DEVICE_ID) != 2)
        return 0;
    u32 ver = mmio_rd32(base + R_VERSION);
    if (ver != 2) {
        uprintf("DISK skip legacy virtio-mmio at 0x%lx version=%u\n", base, ver);
        return 0;
    }
    return 1;
}

static int setup(struct vblk *d, u16 want)
{
    wr(d, R_STATUS, 0);
    wr(d, R_STATUS, S_ACK);
    wr(d, R_STATUS, S_ACK | S_DRIVER);
    wr(d, R_DEV_FEAT_SEL, 1);
    u32 hi = rd(d, R_DEV_FEAT);
    wr(d, R_DEV_FEAT_SEL, 0);
    u32 lo = rd(d, R_DEV_FEAT);
    if (!(hi & F_VERSION_1))
        upanic("disk: device at 0x%lx lacks VIRTIO_F_VERSION_1", d->base);
    if (!(lo & F_BLK_FLUSH))
        upanic("disk: device at 0x%lx lacks VIRTIO_BLK_F_FLUSH", d->base);
    wr(d, R_DRV_FEAT_SEL, 0);
    wr(d, R_DRV_FEAT, F_BLK_FLUSH);
    wr(d, R_DRV_FEAT_SEL, 1);
    wr(d, R_DRV_FEAT, F_VERSION_1);
    wr(d, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    if (!(rd(d, R_STATUS) & S_FEATURES_OK))
        upanic("disk: device at 0x%lx refused our features", d->base);
    wr(d, R_QUEUE_SEL, 0);
    u32 max = rd(d, R_QUEUE_NUM_MAX);
    if (max < 3 || rd(d, R_QUEUE_READY))
        upanic("disk: queue 0 unusable (max=%u)", max);
    d->qsize = (u16)(max < want ? max : want);
    avail.flags = 1;                        /* VIRTQ_AVAIL_F_NO_INTERRUPT: we poll */
    wr(d, R_QUEUE_NUM, d->qsize);
    wr(d, R_DESC_LO, (u32)(u64)desc);
    wr(d, R_DESC_HI, (u32)((u64)desc >> 32));
    wr(d, R_AVAIL_LO, (u32)(u64)&avail);
    wr(d, R_AVAIL_HI, (u32)((u64)&avail >> 32));
    wr(d, R_USED_LO, (u32)(u64)&used);
    wr(d, R_USED_HI, (u32)((u64)&used >> 32));
    wr(d, R_QUEUE_READY, 1);
    wr(d, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    d->capacity = rd(d, R_CONFIG) | ((u64)rd(d, R_CONFIG + 4) << 32);
    d->last_used = used.idx;
    return 1;
}

static int init(struct vblk *d, u16 want)
{
    for (int i = 0; i < cfg.nvmmio; i++)
        if (probe(cfg.vmmio[i]) && (d->base = cfg.vmmio[i]))
            return setup(d, want);
    for (u64 i = 0; i < MINIHV_VIRTIO_COUNT; i++)
        if (probe(MINIHV_VIRTIO_BASE + i * 0x1000) && (d->base = MINIHV_VIRTIO_BASE + i * 0x1000))
            return setup(d, want);
    for (u64 i = 0; i < MICROVM_VIRTIO_COUNT; i++)  /* microvm,acpi=on lists them only in the DSDT */
        if (probe(MICROVM_VIRTIO_BASE + i * 0x200) && (d->base = MICROVM_VIRTIO_BASE + i * 0x200))
            return setup(d, want);
    return 0;
}

int vblk_init(struct vblk *d) { return init(d, VBLK_SYNC_QSIZE); }

int vblk_init_queue(struct vblk *d, u16 want) { return init(d, want > QMAX ? QMAX : want); }

void vblk_submit(struct vblk *d, u16 slot, u32 type, u64 sector, void *buf, u32 len)
{
    u16 h = (u16)(slot * 3);
    areq[slot].type = type;
    areq[slot].rsv = 0;
    areq[slot].sector = sector;
    astatus[slot] = 0xff;
    desc[h] = (struct desc){(u64)&areq[slot], sizeof(areq[slot]), D_NEXT, (u16)(h + 1)};
    desc[h + 1] = (struct desc){(u64)buf, len, (u16)(D_NEXT | (type == VIRTIO_BLK_T_IN ? D_WRITE : 0)), (u16)(h + 2)};
    desc[h + 2] = (struct desc){(u64)&astatus[slot], 1, D_WRITE, 0};
    avail.ring[avail.idx % d->qsize] = h;
    barrier();
    *(volatile u16 *)&avail.idx = (u16)(avail.idx + 1);
}

void vblk_kick(struct vblk *d)
{
    mb();                                   /* avail.idx before reading used.flags */
    if (!(used.flags & USED_F_NO_NOTIFY))
        wr(d, R_QUEUE_NOTIFY, 0);
}

int vblk_reap(struct vblk *d, u16 *slot, int *st)
{
    if (used.idx == d->last_used)
        return 0;
    barrier();
    u32 id = used.ring[d->last_used % d->qsize].id;
    d->last_used++;
    *slot = (u16)(id / 3);
    *st = astatus[id / 3];
    return 1;
}

int vblk_io(struct vblk *d, u32 type, u64 sector, void *buf, void (*wait)(void))
{
    req.type = type;
    req.sector = sector;
    status = 0xff;
    desc[0] = (struct desc){(u64)&req, sizeof(req), D_NEXT, 1};
    if (buf) {
        desc[1] = (struct desc){(u64)buf, 4096, (u16)(D_NEXT | (type == VIRTIO_BLK_T_IN ? D_WRITE : 0)), 2};
        desc[2] = (struct desc){(u64)&status, 1, D_WRITE, 0};
    } else {
        desc[1] = (struct desc){(u64)&status, 1, D_WRITE, 0};
    }
    avail.ring[avail.idx % d->qsize] = 0;
    barrier();
    *(volatile u16 *)&avail.idx = (u16)(avail.idx + 1);
    mb();
    wr(d, R_QUEUE_NOTIFY, 0);
    while (used.idx == d->last_used)
        wait();
    d->last_used++;
    barrier();
    return status;
}
