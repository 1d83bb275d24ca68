/* Test guest: polling virtio-blk over virtio-mmio v2, in ring 3. */
#include "virtio_blk.h"
#include "virtio_mmio.h"

#define F_BLK_FLUSH (1UL << 9)
#define VBLK_SYNC_QSIZE 8
#define VBLK_MIN_QSIZE 3                    /* one request: header, data, status */

struct req { u32 type, rsv; u64 sector; };

static struct vq q;
static struct req req ALIGNED(64);
static volatile u8 status ALIGNED(64);
/* vblk_submit: request slot i owns descriptors 3i..3i+2, header areq[i], status astatus[i] */
static struct req areq[VBLK_MAX_SLOTS] ALIGNED(64);
static volatile u8 astatus[VBLK_MAX_SLOTS] ALIGNED(64);

static int setup(struct vblk *d, u16 want)
{
    u64 have = vmmio_device_features(d->base);
    if (!(have & VIRTIO_F_VERSION_1))
        upanic("disk: device at 0x%lx lacks VIRTIO_F_VERSION_1", d->base);
    if (!(have & F_BLK_FLUSH))
        upanic("disk: device at 0x%lx lacks VIRTIO_BLK_F_FLUSH", d->base);
    vmmio_negotiate(d->base, VIRTIO_F_VERSION_1 | F_BLK_FLUSH, "disk");
    vmmio_queue_setup(d->base, &q, 0, want, VBLK_MIN_QSIZE, "disk");
    d->qsize = q.qsize;
    vmmio_driver_ok(d->base);
    d->capacity = vmmio_config32(d->base, 0) | ((u64)vmmio_config32(d->base, 4) << 32);
    return 1;
}

static int init(struct vblk *d, u16 want)
{
    d->base = vmmio_find(VIRTIO_ID_BLK, 0, "DISK");
    return d->base ? setup(d, want) : 0;
}

int vblk_init(struct vblk *d) { return init(d, VBLK_SYNC_QSIZE); }

int vblk_init_queue(struct vblk *d, u16 want) { return init(d, want); }

static u16 data_flags(u32 type) { return (u16)(VQ_DESC_NEXT | (type == VIRTIO_BLK_T_IN ? VQ_DESC_WRITE : 0)); }

void vblk_submit(struct vblk *d, u16 slot, u32 type, u64 sector, void *buf, u32 len)
{
    (void)d;
    u16 h = (u16)(slot * 3);
    areq[slot].type = type;
    areq[slot].rsv = 0;
    areq[slot].sector = sector;
    astatus[slot] = 0xff;
    q.desc[h] = (struct vq_desc){(u64)&areq[slot], sizeof(areq[slot]), VQ_DESC_NEXT, (u16)(h + 1)};
    q.desc[h + 1] = (struct vq_desc){(u64)buf, len, data_flags(type), (u16)(h + 2)};
    q.desc[h + 2] = (struct vq_desc){(u64)&astatus[slot], 1, VQ_DESC_WRITE, 0};
    vq_push(&q, h);
}

void vblk_kick(struct vblk *d)
{
    (void)d;
    vq_kick(&q);
}

int vblk_reap(struct vblk *d, u16 *slot, int *st)
{
    (void)d;
    u16 head;
    u32 len;
    if (!vq_pop(&q, &head, &len))
        return 0;
    *slot = (u16)(head / 3);
    *st = astatus[head / 3];
    return 1;
}

int vblk_io(struct vblk *d, u32 type, u64 sector, void *buf, void (*wait)(void))
{
    (void)d;
    req.type = type;
    req.sector = sector;
    status = 0xff;
    q.desc[0] = (struct vq_desc){(u64)&req, sizeof(req), VQ_DESC_NEXT, 1};
    if (buf) {
        q.desc[1] = (struct vq_desc){(u64)buf, 4096, data_flags(type), 2};
        q.desc[2] = (struct vq_desc){(u64)&status, 1, VQ_DESC_WRITE, 0};
    } else {
        q.desc[1] = (struct vq_desc){(u64)&status, 1, VQ_DESC_WRITE, 0};
    }
    vq_push(&q, 0);
    vq_kick(&q);
    u16 head;
    u32 len;
    while (!vq_pop(&q, &head, &len))
        wait();
    barrier();
    return status;
}
