/* Test guest: polling virtio-net over virtio-mmio v2, in ring 3. RX queue 0
 * holds one device-writable buffer per descriptor, re-posted as soon as its
 * frame is handled; TX queue 1 uses descriptor i for buffer i. */
#include "virtio_net.h"
#include "virtio_mmio.h"

#define F_NET_MAC (1UL << 5)
#define NET_HDR_LEN 12                  /* virtio 1.x: num_buffers is always there */
#define ETH_MIN_FRAME 14
#define BUF_STRIDE 2048                 /* >= NET_HDR_LEN + 1526 (frame + VLAN tag + FCS room) */
#define RX_BUFS 128
#define TX_BUFS 64
#define RXQ 0
#define TXQ 1
#define QMIN 2

static struct vq rxq, txq;
static u8 rx_buf[RX_BUFS][BUF_STRIDE] ALIGNED(4096);
static u8 tx_buf[TX_BUFS][BUF_STRIDE] ALIGNED(4096);
static u16 tx_free[TX_BUFS];            /* stack of idle TX buffers */
static u16 tx_nfree, tx_pending;        /* pending: queued since the last notify */

static void rx_post(u16 i)
{
    rxq.desc[i] = (struct vq_desc){(u64)rx_buf[i], BUF_STRIDE, VQ_DESC_WRITE, 0};
    vq_push(&rxq, i);
}

static void read_mac(struct vnet *d, u64 have)
{
    static const u8 fallback[6] = {0x02, 0, 0, 0, 0, 0x01}; /* locally administered */
    for (int i = 0; i < 6; i++)
        d->mac[i] = (have & F_NET_MAC) ? vmmio_config8(d->base, (u32)i) : fallback[i];
}

static void setup(struct vnet *d)
{
    u64 have = vmmio_device_features(d->base);
    if (!(have & VIRTIO_F_VERSION_1))
        upanic("net: device at 0x%lx lacks VIRTIO_F_VERSION_1 (legacy virtio-net is not supported)", d->base);
    vmmio_negotiate(d->base, VIRTIO_F_VERSION_1 | (have & F_NET_MAC), "net");
    vmmio_queue_setup(d->base, &rxq, RXQ, RX_BUFS, QMIN, "net");
    vmmio_queue_setup(d->base, &txq, TXQ, TX_BUFS, QMIN, "net");
    d->rx_qsize = rxq.qsize;
    d->tx_qsize = txq.qsize;
    for (u16 i = 0; i < rxq.qsize; i++)
        rx_post(i);
    for (u16 i = 0; i < txq.qsize; i++) {
        memset(tx_buf[i], 0, NET_HDR_LEN);  /* no offloads: the header stays zero */
        tx_free[tx_nfree++] = i;
    }
    vmmio_driver_ok(d->base);
    read_mac(d, have);
    vq_kick(&rxq);
}

int vnet_init(struct vnet *d)
{
    memset(d, 0, sizeof(*d));
    d->base = vmmio_find(VIRTIO_ID_NET, 0, "NET");
    if (!d->base)
        return 0;
    setup(d);
    return 1;
}

u32 vnet_rx_poll(struct vnet *d, void (*deliver)(u8 *frame, u32 len))
{
    u16 head;
    u32 len, n = 0;
    while (n < rxq.qsize && vq_pop(&rxq, &head, &len)) {
        n++;
        if (head >= rxq.qsize || len < NET_HDR_LEN + ETH_MIN_FRAME || len > BUF_STRIDE) {
            d->rx_drops++;
        } else {
            d->rx_frames++;
            deliver(rx_buf[head] + NET_HDR_LEN, len - NET_HDR_LEN);
        }
        if (head < rxq.qsize)
            rx_post(head);
    }
    if (n)
        vq_kick(&rxq);
    return n;
}

static void tx_reclaim(void)
{
    u16 head;
    u32 len;
    while (vq_pop(&txq, &head, &len))
        if (head < txq.qsize)
            tx_free[tx_nfree++] = head;
}

u8 *vnet_tx_buf(struct vnet *d)
{
    if (!tx_nfree)
        tx_reclaim();
    if (!tx_nfree) {
        d->tx_drops++;
        return NULL;
    }
    return tx_buf[tx_free[--tx_nfree]] + NET_HDR_LEN;
}

void vnet_tx_send(struct vnet *d, u8 *frame, u32 len)
{
    u16 i = (u16)((frame - NET_HDR_LEN - tx_buf[0]) / BUF_STRIDE);
    txq.desc[i] = (struct vq_desc){(u64)tx_buf[i], NET_HDR_LEN + len, 0, 0};
    vq_push(&txq, i);
    tx_pending++;
    d->tx_frames++;
}

void vnet_tx_flush(struct vnet *d)
{
    (void)d;
    if (tx_pending)
        vq_kick(&txq);
    tx_pending = 0;
}
