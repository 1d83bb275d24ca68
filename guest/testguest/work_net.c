/* Test guest workload `net ip=A.B.C.D[/N]`: CPU 0 runs the virtio-net driver
 * and the IPv4 stack (net.c, tcp.c) in one poll loop: ARP, ping, UDP and TCP
 * echo on port 7. The other CPUs run `idle`. Lines: docs/test-guest.md. */
#include "net.h"

#define IDLE_HALT_MS 100    /* no frame for this long: sleep a tick between polls */

static struct {
    struct vnet dev;
    struct mon m;
} wn;

static void hb(void)
{
    char extra[160];
    fmt(extra, sizeof(extra), " rx=%lu tx=%lu drops=%lu rexmit=%lu tcp=%lu udp=%lu", wn.dev.rx_frames,
        wn.dev.tx_frames, net.st.drops + wn.dev.rx_drops, net.st.rexmit, net.st.tcp_bytes, net.st.udp);
    mon_hb(&wn.m, extra);
}

static void hex2(char *p, u8 v)
{
    static const char digits[] = "0123456789abcdef";
    p[0] = digits[v >> 4];
    p[1] = digits[v & 0xf];
}

static void print_start(void)
{
    char mac[18];
    for (int i = 0; i < 6; i++) {
        hex2(mac + 3 * i, wn.dev.mac[i]);
        mac[3 * i + 2] = i < 5 ? ':' : 0;
    }
    u32 ip = cfg.ip;
    uprintf("NET mac=%s ip=%u.%u.%u.%u/%u base=0x%lx rxq=%u txq=%u\n", mac, ip >> 24, (ip >> 16) & 0xff,
            (ip >> 8) & 0xff, ip & 0xff, cfg.prefix, wn.dev.base, wn.dev.rx_qsize, wn.dev.tx_qsize);
}

NORETURN void work_net(u32 cpu)
{
    mon_init(&wn.m, cpu);
    if (!vnet_init(&wn.dev))
        upanic("net: no virtio-net device (virtio-mmio version 2)");
    net_init(&wn.dev, cfg.ip, cfg.prefix);
    print_start();
    u64 last_rx = rdtsc(), idle = IDLE_HALT_MS * tg.tsc_khz;
    for (;;) {
        u64 now = rdtsc();
        if (mon_poll(&wn.m))
            hb();
        if (vnet_rx_poll(&wn.dev, net_rx))
            last_rx = now;
        net_poll(now);
        vnet_tx_flush(&wn.dev);
        if (now - last_rx > idle)       /* also after the TSC went backwards: then the next frame wakes us */
            gate0(G_HALT);
    }
}
