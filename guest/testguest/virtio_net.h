/* Test guest: a polling virtio-net driver over virtio-mmio version 2, run
 * in ring 3. It negotiates VERSION_1 and MAC only (no checksum offload, no
 * TSO, no mergeable buffers): every frame is whole in one buffer, behind a
 * 12-byte virtio_net_hdr that is zero on TX and ignored on RX. */
#ifndef TG_VIRTIO_NET_H
#define TG_VIRTIO_NET_H

#include "user.h"

#define ETH_FRAME_MAX 1514          /* without FCS: 14-byte header + 1500 MTU */

struct vnet {
    u64 base;                       /* MMIO window */
    u8 mac[6];
    u16 rx_qsize, tx_qsize;
    u64 rx_frames, tx_frames;
    u64 rx_drops, tx_drops;         /* RX: runt frames; TX: no free buffer */
};

/* Finds and initialises the first virtio-net device (the probe order of
 * vmmio_find), fills the RX queue. 0 if none; upanic if the device lacks
 * VIRTIO_F_VERSION_1. */
int vnet_init(struct vnet *d);

/* Hands every received frame to deliver(frame, len), gives the buffers back
 * and notifies the device once. Returns the number of frames. */
u32 vnet_rx_poll(struct vnet *d, void (*deliver)(u8 *frame, u32 len));

/* A free TX buffer for one frame of up to ETH_FRAME_MAX bytes, or NULL (and a
 * tx drop) when all are in flight. vnet_tx_send queues it with `len` bytes;
 * vnet_tx_flush notifies the device once for everything queued since. */
u8 *vnet_tx_buf(struct vnet *d);
void vnet_tx_send(struct vnet *d, u8 *frame, u32 len);
void vnet_tx_flush(struct vnet *d);

#endif
