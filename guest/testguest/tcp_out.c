/* Test guest: TCP segments out. Every segment we send (but a reset to an
 * unknown connection) acknowledges rcv_nxt and advertises the room left in
 * the connection's buffer. */
#include "tcp.h"

#define TCP_DOFF_SHIFT 2                /* data offset: 32-bit words in the top nibble */

static u32 room(const struct tcb *c) { return TCP_BUF - c->buf_len; }

/* A segment's header in a fresh TX frame; NULL if none is free. */
static u8 *begin(const u8 *mac, u32 ip, u16 sport, u16 dport, u32 seq, u32 ack, u8 flags, u32 hlen)
{
    u8 *t = ip_begin(mac, ip, IP_PROTO_TCP);
    if (!t)
        return NULL;
    memset(t, 0, hlen);
    put16(t, sport);
    put16(t + 2, dport);
    put32(t + 4, seq);
    put32(t + 8, ack);
    t[12] = (u8)(hlen << TCP_DOFF_SHIFT);
    t[13] = flags;
    return t;
}

static void finish(u8 *t, u32 ip, u32 len)
{
    put16(t + 16, csum_fold(csum_add(csum_pseudo(net.ip, ip, IP_PROTO_TCP, len), t, len)));
    ip_end(t, len);
}

/* Our timestamp clock in ms: the TSC, but never backwards (a peer drops a
 * segment whose TSval is older than one it saw: RFC 7323 PAWS), so a
 * destination host whose TSC is behind only stops it for a while. */
static u32 ts_now(void)
{
    static u64 last, offset;
    u64 ms = rdtsc() / net.tsc_ms;
    if (ms + offset < last)
        offset = last - ms;
    last = ms + offset;
    return (u32)last;
}

/* The timestamps option at the end of a header of hlen bytes. */
static void put_ts(const struct tcb *c, u8 *t, u32 hlen)
{
    u8 *o = t + hlen - TCP_OPT_TS_SPACE;
    o[0] = o[1] = TCP_OPT_NOP;
    o[2] = TCP_OPT_TS;
    o[3] = TCP_OPT_TS_LEN;
    put32(o + 4, ts_now());
    put32(o + 8, c->ts_recent);
}

static u8 *begin_wnd(struct tcb *c, u32 seq, u8 flags, u32 hlen, u32 wnd)
{
    hlen += c->ts_ok ? TCP_OPT_TS_SPACE : 0;
    u8 *t = begin(c->mac, c->ip, ECHO_PORT, c->port, seq, c->rcv_nxt, flags, hlen);
    if (!t)
        return NULL;
    if (c->ts_ok)
        put_ts(c, t, hlen);
    c->adv_wnd = wnd;
    put16(t + 14, wnd);
    c->ack_due = 0;
    return t;
}

static u8 *begin_conn(struct tcb *c, u32 seq, u8 flags, u32 hlen) { return begin_wnd(c, seq, flags, hlen, room(c)); }
static u32 hdr_len(const struct tcb *c, u32 hlen) { return hlen + (c->ts_ok ? TCP_OPT_TS_SPACE : 0); }

int tcp_send_syn_ack(struct tcb *c)
{
    u8 *t = begin_conn(c, c->iss, TCP_SYN | TCP_ACK, TCP_HDR_LEN + TCP_OPT_MSS_LEN);
    if (!t)
        return 0;
    t[TCP_HDR_LEN] = TCP_OPT_MSS;
    t[TCP_HDR_LEN + 1] = TCP_OPT_MSS_LEN;
    put16(t + TCP_HDR_LEN + 2, TCP_MSS);
    finish(t, c->ip, hdr_len(c, TCP_HDR_LEN + TCP_OPT_MSS_LEN));
    return 1;
}

int tcp_send_data(struct tcb *c, u32 seq, u32 n)
{
    u8 *t = begin_conn(c, seq, TCP_ACK | TCP_PSH, TCP_HDR_LEN);
    if (!t)
        return 0;
    u32 at = (seq - c->iss - 1) & (TCP_BUF - 1);  /* data starts after the SYN */
    u32 first = n < TCP_BUF - at ? n : TCP_BUF - at, hl = hdr_len(c, TCP_HDR_LEN);
    memcpy(t + hl, c->buf + at, first);
    memcpy(t + hl + first, c->buf, n - first);
    finish(t, c->ip, hl + n);
    return 1;
}

int tcp_send_ctl(struct tcb *c, u32 seq, u8 flags)
{
    u8 *t = begin_conn(c, seq, flags, TCP_HDR_LEN);
    if (!t)
        return 0;
    finish(t, c->ip, hdr_len(c, TCP_HDR_LEN));
    return 1;
}

int tcp_send_dup_ack(struct tcb *c)
{
    u32 wnd = c->adv_wnd < room(c) ? c->adv_wnd : room(c);
    u8 *t = begin_wnd(c, c->snd_nxt, TCP_ACK, TCP_HDR_LEN, wnd);
    if (!t)
        return 0;
    finish(t, c->ip, hdr_len(c, TCP_HDR_LEN));
    return 1;
}

void tcp_send_reset(const u8 *mac, u32 ip, const u8 *seg, u32 dlen)
{
    u8 in = seg[13];
    u32 seq = 0, ack = get32(seg + 4) + dlen + !!(in & TCP_SYN) + !!(in & TCP_FIN);
    u8 flags = TCP_RST | TCP_ACK;
    if (in & TCP_ACK) {
        seq = get32(seg + 8);
        ack = 0;
        flags = TCP_RST;
    }
    u8 *t = begin(mac, ip, get16(seg + 2), get16(seg), seq, ack, flags, TCP_HDR_LEN);
    if (t)
        finish(t, ip, TCP_HDR_LEN);
}
