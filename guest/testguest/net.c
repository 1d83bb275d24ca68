/* Test guest: Ethernet, ARP, IPv4, ICMP echo and UDP echo for `net`. */
#include "net.h"

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806
#define ETH_MIN_LEN 60                  /* without FCS: shorter frames are padded */
#define ARP_LEN 28
#define ARP_HTYPE_ETH 1
#define ARP_OP_REQUEST 1
#define ARP_OP_REPLY 2
#define IP_VERSION_IHL 0x45
#define IP_TTL 64
#define IP_FLAG_MF 0x2000
#define IP_FRAG_OFFSET 0x1fff
#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
#define ICMP_HDR_LEN 8
#define UDP_HDR_LEN 8

struct net net;
static const u8 broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

void net_init(struct vnet *dev, u32 ip, u32 prefix)
{
    net.dev = dev;
    memcpy(net.mac, dev->mac, 6);
    net.ip = ip;
    net.prefix = prefix;
    net.tsc_ms = tg.tsc_khz;
    tcp_init();
}

u32 csum_add(u32 sum, const u8 *p, u32 len)
{
    for (; len > 1; p += 2, len -= 2)
        sum += get16(p);
    if (len)
        sum += (u32)p[0] << 8;
    return sum;
}

u16 csum_fold(u32 sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (u16)~sum;
}

u32 csum_pseudo(u32 src, u32 dst, u8 proto, u32 len)
{
    return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + len;
}

/* A TX frame with its Ethernet header filled; NULL (a drop) if none is free. */
static u8 *eth_begin(const u8 *dst_mac, u16 type)
{
    u8 *f = vnet_tx_buf(net.dev);
    if (!f) {
        net.st.drops++;
        return NULL;
    }
    memcpy(f, dst_mac, 6);
    memcpy(f + 6, net.mac, 6);
    put16(f + 12, type);
    return f;
}

static void eth_send(u8 *f, u32 len)
{
    if (len < ETH_MIN_LEN) {
        memset(f + len, 0, ETH_MIN_LEN - len);
        len = ETH_MIN_LEN;
    }
    vnet_tx_send(net.dev, f, len);
}

u8 *ip_begin(const u8 *dst_mac, u32 dst_ip, u8 proto)
{
    u8 *f = eth_begin(dst_mac, ETHERTYPE_IPV4);
    if (!f)
        return NULL;
    u8 *ip = f + ETH_HDR_LEN;
    memset(ip, 0, IP_HDR_LEN);
    ip[0] = IP_VERSION_IHL;
    ip[8] = IP_TTL;
    ip[9] = proto;
    put32(ip + 12, net.ip);
    put32(ip + 16, dst_ip);
    return ip + IP_HDR_LEN;
}

void ip_end(u8 *payload, u32 len)
{
    u8 *ip = payload - IP_HDR_LEN;
    put16(ip + 2, IP_HDR_LEN + len);
    put16(ip + 10, csum_fold(csum_add(0, ip, IP_HDR_LEN)));
    eth_send(ip - ETH_HDR_LEN, ETH_HDR_LEN + IP_HDR_LEN + len);
}

/* ARP for Ethernet/IPv4: answer a request for our address. */
static void arp_rx(const u8 *a, u32 len)
{
    if (len < ARP_LEN || get16(a) != ARP_HTYPE_ETH || get16(a + 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4) {
        net.st.drops++;
        return;
    }
    if (get16(a + 6) != ARP_OP_REQUEST || get32(a + 24) != net.ip)
        return;
    u8 *f = eth_begin(a + 8, ETHERTYPE_ARP);
    if (!f)
        return;
    u8 *r = f + ETH_HDR_LEN;
    memcpy(r, a, 6);                    /* htype, ptype, hlen, plen */
    put16(r + 6, ARP_OP_REPLY);
    memcpy(r + 8, net.mac, 6);
    put32(r + 14, net.ip);
    memcpy(r + 18, a + 8, 10);          /* the asker's MAC and address */
    eth_send(f, ETH_HDR_LEN + ARP_LEN);
}

static void icmp_rx(const u8 *src_mac, u32 src, const u8 *m, u32 len)
{
    if (len < ICMP_HDR_LEN || csum_fold(csum_add(0, m, len))) {
        net.st.drops++;
        return;
    }
    if (m[0] != ICMP_ECHO_REQUEST)
        return;
    u8 *r = ip_begin(src_mac, src, IP_PROTO_ICMP);
    if (!r)
        return;
    memcpy(r, m, len);                  /* same id, sequence and data */
    r[0] = ICMP_ECHO_REPLY;
    put16(r + 2, 0);
    put16(r + 2, csum_fold(csum_add(0, r, len)));
    ip_end(r, len);
    net.st.icmp++;
}

static u16 l4_sum(u32 src, u32 dst, u8 proto, const u8 *p, u32 len)
{
    return csum_fold(csum_add(csum_pseudo(src, dst, proto, len), p, len));
}

/* RFC 862: the datagram goes back to where it came from. */
static void udp_rx(const u8 *src_mac, u32 src, const u8 *u, u32 len)
{
    if (len < UDP_HDR_LEN || get16(u + 4) < UDP_HDR_LEN || get16(u + 4) > len ||
        (get16(u + 6) && l4_sum(src, net.ip, IP_PROTO_UDP, u, get16(u + 4)))) {
        net.st.drops++;
        return;
    }
    if (get16(u + 2) != ECHO_PORT)
        return;
    len = get16(u + 4);
    u8 *r = ip_begin(src_mac, src, IP_PROTO_UDP);
    if (!r)
        return;
    put16(r, ECHO_PORT);
    memcpy(r + 2, u, 2);                /* to the sender's port */
    put16(r + 4, len);
    put16(r + 6, 0);
    memcpy(r + UDP_HDR_LEN, u + UDP_HDR_LEN, len - UDP_HDR_LEN);
    u16 sum = l4_sum(net.ip, src, IP_PROTO_UDP, r, len);
    put16(r + 6, sum ? sum : 0xffff);   /* 0 would mean "no checksum" */
    ip_end(r, len);
    net.st.udp++;
}

/* The header length of a well-formed IPv4 packet for us, else 0. */
static u32 ip_check(const u8 *ip, u32 len)
{
    u32 hl = (u32)(ip[0] & 0xf) * 4;
    if (len < IP_HDR_LEN || ip[0] >> 4 != 4 || hl < IP_HDR_LEN || get16(ip + 2) < hl || get16(ip + 2) > len ||
        csum_fold(csum_add(0, ip, hl)))
        return 0;
    return hl;
}

static void ip_rx(const u8 *src_mac, u8 *ip, u32 len)
{
    u32 hl = ip_check(ip, len);
    if (!hl) {
        net.st.drops++;
        return;
    }
    if (get32(ip + 16) != net.ip)
        return;
    if (get16(ip + 6) & (IP_FLAG_MF | IP_FRAG_OFFSET)) {
        net.st.frags++;
        net.st.drops++;
        return;
    }
    u32 src = get32(ip + 12), plen = get16(ip + 2) - hl;
    if (ip[9] == IP_PROTO_ICMP)
        icmp_rx(src_mac, src, ip + hl, plen);
    else if (ip[9] == IP_PROTO_UDP)
        udp_rx(src_mac, src, ip + hl, plen);
    else if (ip[9] == IP_PROTO_TCP)
        tcp_rx(src_mac, src, ip + hl, plen);
}

void net_rx(u8 *f, u32 len)
{
    if (len < ETH_HDR_LEN) {
        net.st.drops++;
        return;
    }
    if (memcmp(f, net.mac, 6) && memcmp(f, broadcast, 6))
        return;
    u16 type = get16(f + 12);
    if (type == ETHERTYPE_ARP)
        arp_rx(f + ETH_HDR_LEN, len - ETH_HDR_LEN);
    else if (type == ETHERTYPE_IPV4)
        ip_rx(f + 6, f + ETH_HDR_LEN, len - ETH_HDR_LEN);
}

void net_poll(u64 now) { tcp_poll(now); }
