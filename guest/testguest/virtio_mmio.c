/* Test guest: virtio-mmio version 2 probe, handshake and virtqueues. */
#include "virtio_mmio.h"

#define VIRTIO_MAGIC 0x74726976             /* "virt" */
#define MINIHV_VIRTIO_BASE 0xd0000000UL     /* window i at base + i * 0x1000 */
#define MINIHV_VIRTIO_STRIDE 0x1000
#define MINIHV_VIRTIO_COUNT 8
#define MICROVM_VIRTIO_BASE 0xfeb00000UL    /* QEMU microvm: base + n * 0x200 */
#define MICROVM_VIRTIO_STRIDE 0x200
#define MICROVM_VIRTIO_COUNT 32
#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1

static u32 rd(u64 base, u32 r) { return mmio_rd32(base + r); }
static void wr(u64 base, u32 r, u32 v) { mmio_wr32(base + r, v); }

static int probe(u64 base, u32 device_id, const char *tag)
{
    if (addr_is_ram(base) || rd(base, VM_MAGIC) != VIRTIO_MAGIC || rd(base, VM_DEVICE_ID) != device_id)
        return 0;
    u32 ver = rd(base, VM_VERSION);
    if (ver != 2) {
        uprintf("%s skip legacy virtio-mmio at 0x%lx version=%u\n", tag, base, ver);
        return 0;
    }
    return 1;
}

/* The location with index i in probe order, 0 past the end. */
static u64 location(int i)
{
    if (i < cfg.nvmmio)
        return cfg.vmmio[i];
    i -= cfg.nvmmio;
    if (i < MINIHV_VIRTIO_COUNT)
        return MINIHV_VIRTIO_BASE + (u64)i * MINIHV_VIRTIO_STRIDE;
    i -= MINIHV_VIRTIO_COUNT;
    if (i < MICROVM_VIRTIO_COUNT)           /* microvm,acpi=on lists them only in the DSDT */
        return MICROVM_VIRTIO_BASE + (u64)i * MICROVM_VIRTIO_STRIDE;
    return 0;
}

u64 vmmio_find(u32 device_id, int n, const char *tag)
{
    u64 base;
    for (int i = 0; (base = location(i)); i++)
        if (probe(base, device_id, tag) && n-- == 0)
            return base;
    return 0;
}

u64 vmmio_device_features(u64 base)
{
    wr(base, VM_STATUS, 0);
    wr(base, VM_STATUS, S_ACK);
    wr(base, VM_STATUS, S_ACK | S_DRIVER);
    wr(base, VM_DEV_FEAT_SEL, 1);
    u64 hi = rd(base, VM_DEV_FEAT);
    wr(base, VM_DEV_FEAT_SEL, 0);
    return hi << 32 | rd(base, VM_DEV_FEAT);
}

void vmmio_negotiate(u64 base, u64 want, const char *tag)
{
    wr(base, VM_DRV_FEAT_SEL, 0);
    wr(base, VM_DRV_FEAT, (u32)want);
    wr(base, VM_DRV_FEAT_SEL, 1);
    wr(base, VM_DRV_FEAT, (u32)(want >> 32));
    wr(base, VM_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    if (!(rd(base, VM_STATUS) & S_FEATURES_OK))
        upanic("%s: device at 0x%lx refused our features", tag, base);
}

static void wr64(u64 base, u32 lo, u64 v)
{
    wr(base, lo, (u32)v);
    wr(base, lo + 4, (u32)(v >> 32));
}

void vmmio_queue_setup(u64 base, struct vq *q, u16 index, u16 want, u16 min, const char *tag)
{
    wr(base, VM_QUEUE_SEL, index);
    u32 max = rd(base, VM_QUEUE_NUM_MAX);
    if (max < min || rd(base, VM_QUEUE_READY))
        upanic("%s: queue %u unusable (max=%u)", tag, index, max);
    if (want > VQ_MAX)
        want = VQ_MAX;
    q->base = base;
    q->index = index;
    q->qsize = (u16)(max < want ? max : want);
    q->avail.flags = AVAIL_F_NO_INTERRUPT;
    wr(base, VM_QUEUE_NUM, q->qsize);
    wr64(base, VM_DESC_LO, (u64)q->desc);
    wr64(base, VM_AVAIL_LO, (u64)&q->avail);
    wr64(base, VM_USED_LO, (u64)&q->used);
    wr(base, VM_QUEUE_READY, 1);
    q->last_used = q->used.idx;
}

void vmmio_driver_ok(u64 base) { wr(base, VM_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK); }

void vq_push(struct vq *q, u16 head)
{
    q->avail.ring[q->avail.idx % q->qsize] = head;
    barrier();                              /* the entry before the index (x86: stores in order) */
    *(volatile u16 *)&q->avail.idx = (u16)(q->avail.idx + 1);
}

void vq_kick(struct vq *q)
{
    mb();                                   /* avail.idx before reading used.flags */
    if (!(q->used.flags & USED_F_NO_NOTIFY))
        wr(q->base, VM_QUEUE_NOTIFY, q->index);
}

int vq_pop(struct vq *q, u16 *head, u32 *len)
{
    if (q->used.idx == q->last_used)
        return 0;
    barrier();                              /* the index before the entry */
    u16 slot = q->last_used % q->qsize;
    *head = (u16)q->used.ring[slot].id;
    *len = q->used.ring[slot].len;
    q->last_used++;
    return 1;
}
