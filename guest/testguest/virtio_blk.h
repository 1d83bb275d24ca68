/* Test guest: a polling virtio-blk driver over virtio-mmio version 2, run
 * entirely in ring 3 (MMIO works from ring 3; no interrupts are used). */
#ifndef TG_VIRTIO_BLK_H
#define TG_VIRTIO_BLK_H

#include "user.h"

#define VIRTIO_BLK_T_IN    0
#define VIRTIO_BLK_T_OUT   1
#define VIRTIO_BLK_T_FLUSH 4

struct vblk {
    u64 base;           /* MMIO window */
    u64 capacity;       /* 512-byte sectors */
    u16 qsize;
};

/* Finds and initialises the first virtio-blk device: virtio_mmio.device=
 * locations from the command line, then minihv's windows, then QEMU
 * microvm's. 0 if none. */
int vblk_init(struct vblk *d);

/* One synchronous request (4 KiB for IN/OUT, none for FLUSH); `wait` is
 * called while polling. Returns the virtio-blk status (0 = OK). */
int vblk_io(struct vblk *d, u32 type, u64 sector, void *buf, void (*wait)(void));

/* Asynchronous requests (diskbench). vblk_init_queue is vblk_init with a
 * queue of up to `want` entries (max 256) instead of 8. Request slot i
 * (0 <= i < VBLK_MAX_SLOTS and 3*i+2 < qsize) is one 3-descriptor chain
 * (header, `len` bytes of buf in one descriptor, status); a slot may be
 * reused once vblk_reap returned it. vblk_submit only fills the avail ring;
 * vblk_kick notifies the device (unless it set VIRTQ_USED_F_NO_NOTIFY).
 * vblk_reap pops one used entry: returns 0 if none, else its slot and its
 * virtio-blk status. Do not mix with vblk_io on the same queue. */
#define VBLK_MAX_SLOTS 85
int vblk_init_queue(struct vblk *d, u16 want);
void vblk_submit(struct vblk *d, u16 slot, u32 type, u64 sector, void *buf, u32 len);
void vblk_kick(struct vblk *d);
int vblk_reap(struct vblk *d, u16 *slot, int *st);

#endif
