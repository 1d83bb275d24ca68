/* Test guest: a tiny IPv4 host stack for the `net` workload, polled from one
 * CPU. Ethernet, ARP (answers for our address), IPv4 (header checksum
 * checked; fragments dropped), ICMP echo, UDP echo (port 7) in net.c; a TCP
 * echo server (port 7) in tcp.c. Replies go to the MAC address the peer's
 * frame came from: there is no ARP cache, no routing and no gateway. */
#ifndef TG_NET_H
#define TG_NET_H

#include "virtio_net.h"

#define ECHO_PORT 7
#define IP_PROTO_ICMP 1
#define IP_PROTO_TCP 6
#define IP_PROTO_UDP 17
#define ETH_HDR_LEN 14
#define IP_HDR_LEN 20                   /* what we send: no options */
#define IP_MTU 1500

struct net_stats {
    u64 drops;                          /* malformed, bad checksum, fragment, out of order, no TX buffer */
    u64 frags;                          /* IPv4 fragments (also in drops) */
    u64 rexmit;                         /* TCP segments sent again (timeout or 3 duplicate ACKs) */
    u64 tcp_conns;                      /* TCP connections accepted */
    u64 tcp_bytes;                      /* TCP bytes received in order (each is echoed) */
    u64 udp;                            /* UDP datagrams echoed */
    u64 icmp;                           /* ICMP echo requests answered */
};

struct net {
    struct vnet *dev;
    u8 mac[6];
    u32 ip;                             /* host byte order */
    u32 prefix;
    u64 tsc_ms;                         /* TSC ticks per millisecond */
    struct net_stats st;
};
extern struct net net;

void net_init(struct vnet *dev, u32 ip, u32 prefix);
/* One received Ethernet frame (vnet_rx_poll's deliver). */
void net_rx(u8 *frame, u32 len);
/* Timers and pending output; call every loop with the TSC. */
void net_poll(u64 now);

/* ---- helpers shared by net.c and tcp.c ---- */
static inline u16 get16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static inline u32 get32(const u8 *p) { return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3]; }
static inline void put16(u8 *p, u32 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }
static inline void put32(u8 *p, u32 v) { put16(p, v >> 16); put16(p + 2, v); }

/* RFC 1071 sum: add bytes to a 32-bit accumulator, fold at the end. */
u32 csum_add(u32 sum, const u8 *p, u32 len);
u16 csum_fold(u32 sum);
/* The TCP/UDP pseudo-header sum. */
u32 csum_pseudo(u32 src, u32 dst, u8 proto, u32 len);

/* Sending an IPv4 packet: ip_begin returns where the `proto` payload goes
 * in a fresh TX frame (NULL, counted as a drop, if none is free); ip_end
 * fills the IPv4 header for `len` payload bytes and queues the frame. */
u8 *ip_begin(const u8 *dst_mac, u32 dst_ip, u8 proto);
void ip_end(u8 *payload, u32 len);

/* tcp.c */
void tcp_init(void);
void tcp_rx(const u8 *src_mac, u32 src_ip, u8 *seg, u32 len);
void tcp_poll(u64 now);

#endif
