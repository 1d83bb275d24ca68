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
    u16 qsize, last_used;
};

/* Finds and initialises the first virtio-blk device: virtio_mmio.device=
 * locations from the command line, then minihv's windows, then QEMU
 * microvm's. 0 if none. */
int vblk_init(struct vblk *d);

/* One synchronous request (4 KiB for IN/OUT, none for FLUSH); `wait` is
 * called while polling. Returns the virtio-blk status (0 = OK). */
int vblk_io(struct vblk *d, u32 type, u64 sector, void *buf, void (*wait)(void));

#endif
