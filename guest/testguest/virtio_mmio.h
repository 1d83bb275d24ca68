/* Test guest: what the polling ring-3 virtio drivers (virtio_blk.c,
 * virtio_net.c) share: the virtio-mmio version 2 registers, the probe by
 * device id, the status/feature handshake and split-virtqueue setup. It
 * knows nothing about any device type's requests or config space. */
#ifndef TG_VIRTIO_MMIO_H
#define TG_VIRTIO_MMIO_H

#include "user.h"

enum vmmio_reg {
    VM_MAGIC = 0x000, VM_VERSION = 0x004, VM_DEVICE_ID = 0x008,
    VM_DEV_FEAT = 0x010, VM_DEV_FEAT_SEL = 0x014, VM_DRV_FEAT = 0x020, VM_DRV_FEAT_SEL = 0x024,
    VM_QUEUE_SEL = 0x030, VM_QUEUE_NUM_MAX = 0x034, VM_QUEUE_NUM = 0x038, VM_QUEUE_READY = 0x044,
    VM_QUEUE_NOTIFY = 0x050, VM_STATUS = 0x070,
    VM_DESC_LO = 0x080, VM_DESC_HI = 0x084, VM_AVAIL_LO = 0x090, VM_AVAIL_HI = 0x094,
    VM_USED_LO = 0x0a0, VM_USED_HI = 0x0a4, VM_CONFIG = 0x100,
};

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLK 2
#define VIRTIO_F_VERSION_1 (1UL << 32)
#define VQ_MAX 256                          /* entries of storage per queue */
#define VQ_DESC_NEXT 1
#define VQ_DESC_WRITE 2                     /* the device writes this buffer */

struct vq_desc { u64 addr; u32 len; u16 flags, next; };
struct vq_avail { u16 flags, idx, ring[VQ_MAX], event; };
struct vq_used { volatile u16 flags; volatile u16 idx; struct { u32 id, len; } ring[VQ_MAX]; u16 event; };

/* One split virtqueue. The rings are page-aligned storage of VQ_MAX entries;
 * the device is told qsize. */
struct vq {
    struct vq_desc desc[VQ_MAX] ALIGNED(4096);
    struct vq_avail avail ALIGNED(4096);
    struct vq_used used ALIGNED(4096);
    u64 base;                               /* MMIO window of the device */
    u16 index, qsize, last_used;
};

/* The base of the n-th (from 0) version 2 device with this DeviceID, probing
 * virtio_mmio.device= locations from the command line, then minihv's windows,
 * then QEMU microvm's; 0 if none. `tag` names the driver in the line printed
 * for a skipped legacy (version 1) device. */
u64 vmmio_find(u32 device_id, int n, const char *tag);

/* Reset, ACKNOWLEDGE, DRIVER, then offer `want` (bit 32 = VERSION_1) and
 * FEATURES_OK. Returns the device's 64 feature bits; upanic if the device
 * refuses `want` (the caller checks `want` is a subset before). */
u64 vmmio_device_features(u64 base);
void vmmio_negotiate(u64 base, u64 want, const char *tag);

/* Queue `index` with up to `want` entries (at most VQ_MAX, at least `min`),
 * NO_INTERRUPT (we poll); upanic if unusable. */
void vmmio_queue_setup(u64 base, struct vq *q, u16 index, u16 want, u16 min, const char *tag);
void vmmio_driver_ok(u64 base);
static inline u32 vmmio_config32(u64 base, u32 off) { return mmio_rd32(base + VM_CONFIG + off); }
static inline u8 vmmio_config8(u64 base, u32 off) { return *(volatile u8 *)(base + VM_CONFIG + off); }

/* Publish descriptor chain `head` in the avail ring (no notify). */
void vq_push(struct vq *q, u16 head);
/* Notify the device unless it set VIRTQ_USED_F_NO_NOTIFY. */
void vq_kick(struct vq *q);
/* Pop one used entry: 0 if none, else 1 with its head and written length. */
int vq_pop(struct vq *q, u16 *head, u32 *len);

#endif
