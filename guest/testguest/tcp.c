/* Test guest: the TCP echo server on port 7 (RFC 793/9293 subset). Up to
 * TCP_MAX_CONNS connections; in-order receive only (an out-of-order segment
 * is dropped and answered with a duplicate ACK); every byte received is sent
 * back in order within the peer's window. Loss recovery: a timeout (RTO from
 * 200 ms, doubling to 2 s) or three duplicate ACKs send the oldest
 * unacknowledged segment again, and while recovering each partial ACK sends
 * the next oldest (NewReno's idea, without congestion control). */
#include "tcp.h"

#define TCP_DEFAULT_MSS 536             /* RFC 9293 3.7.1: no MSS option */
#define RTO_INIT_MS 200
#define RTO_MAX_MS 2000
#define MAX_TIMEOUTS 15                 /* in a row, then abort: ~25 s without an ACK */
#define DUPACK_THRESHOLD 3

struct seg {
    u32 seq, ack, wnd, dlen;
    u8 flags, has_ts;
    u16 mss;                            /* option on a SYN, 0 if none */
    u32 tsval;                          /* the peer's timestamp, if has_ts */
    const u8 *data;
};

static struct tcb conns[TCP_MAX_CONNS];
static u64 last_now;

void tcp_init(void)
{
    memset(conns, 0, sizeof(conns));
    last_now = rdtsc();
}

static u64 rto_init(void) { return RTO_INIT_MS * net.tsc_ms; }

static void set_timer(struct tcb *c)
{
    int waiting = c->snd_una != c->snd_max || (c->snd_wnd == 0 && c->buf_len);  /* persist */
    c->timer = waiting ? rdtsc() + c->rto : 0;
}

static void seg_opts(struct seg *s, const u8 *opt, u32 len)
{
    for (u32 i = 0; i < len && opt[i] != TCP_OPT_END;) {
        if (opt[i] == TCP_OPT_NOP) {
            i++;
            continue;
        }
        if (i + 1 >= len || opt[i + 1] < 2)
            return;
        if (opt[i] == TCP_OPT_MSS && opt[i + 1] == TCP_OPT_MSS_LEN && i + TCP_OPT_MSS_LEN <= len &&
            (s->flags & TCP_SYN))
            s->mss = get16(opt + i + 2);
        if (opt[i] == TCP_OPT_TS && opt[i + 1] == TCP_OPT_TS_LEN && i + TCP_OPT_TS_LEN <= len) {
            s->has_ts = 1;
            s->tsval = get32(opt + i + 2);
        }
        i += opt[i + 1];
    }
}

/* Parses a segment whose checksum holds; 0 if malformed. */
static int seg_parse(struct seg *s, u32 src, const u8 *t, u32 len)
{
    u32 hl = (u32)(t[12] >> 4) * 4;
    if (len < TCP_HDR_LEN || hl < TCP_HDR_LEN || hl > len ||
        csum_fold(csum_add(csum_pseudo(src, net.ip, IP_PROTO_TCP, len), t, len)))
        return 0;
    *s = (struct seg){.seq = get32(t + 4), .ack = get32(t + 8), .wnd = get16(t + 14), .dlen = len - hl,
                      .flags = t[13], .data = t + hl};
    seg_opts(s, t + TCP_HDR_LEN, hl - TCP_HDR_LEN);
    return 1;
}

static struct tcb *lookup(u32 ip, u16 port)
{
    for (int i = 0; i < TCP_MAX_CONNS; i++)
        if (conns[i].state != T_FREE && conns[i].ip == ip && conns[i].port == port)
            return &conns[i];
    return NULL;
}

static struct tcb *accept(const u8 *mac, u32 ip, u16 port, const struct seg *s)
{
    struct tcb *c = NULL;
    for (int i = 0; !c && i < TCP_MAX_CONNS; i++)
        if (conns[i].state == T_FREE)
            c = &conns[i];
    if (!c)
        return NULL;
    u32 iss = (u32)(rdtsc() >> 4);      /* RFC 6528 wants a keyed hash; a test guest takes the clock */
    *c = (struct tcb){.state = T_SYN_RCVD, .ip = ip, .port = port, .iss = iss, .snd_una = iss,
                      .snd_nxt = iss, .snd_max = iss, .snd_wnd = s->wnd, .rcv_nxt = s->seq + 1,
                      .buf_seq = iss + 1, .rto = rto_init()};
    memcpy(c->mac, mac, 6);
    c->ts_ok = s->has_ts;
    c->ts_recent = s->tsval;
    u16 mss = s->mss ? s->mss : TCP_DEFAULT_MSS;
    c->mss = mss < TCP_MSS ? mss : TCP_MSS;
    net.st.tcp_conns++;
    return c;
}

/* Sends the oldest unacknowledged segment again: SYN-ACK, data or FIN. An
 * ACK that was due is still sent at snd_nxt: a peer takes a window update
 * only from a segment no older than the last one (RFC 9293 3.10.7.4). */
static void resend_oldest(struct tcb *c)
{
    u32 end = tcb_data_end(c), n = end - c->snd_una;
    u8 due = c->ack_due;
    if (c->state == T_SYN_RCVD)
        tcp_send_syn_ack(c);
    else if (c->snd_una != end)
        tcp_send_data(c, c->snd_una, n < tcb_seg_max(c) ? n : tcb_seg_max(c));
    else
        tcp_send_ctl(c, end, TCP_FIN | TCP_ACK);
    c->ack_due = due;
    net.st.rexmit++;
}

static void new_ack(struct tcb *c, u32 ack)
{
    u32 data_acked = seq_lt(tcb_data_end(c), ack) ? tcb_data_end(c) : ack;
    if (seq_lt(c->buf_seq, data_acked)) {
        c->buf_len -= data_acked - c->buf_seq;
        c->buf_seq = data_acked;
        if (c->adv_wnd < c->mss)        /* the peer may be waiting for room: tell it */
            c->ack_due = 1;
    }
    c->snd_una = ack;
    if (seq_lt(c->snd_nxt, ack))
        c->snd_nxt = ack;
    c->dupacks = 0;
    c->rto = rto_init();
    if (c->recover && seq_lt(ack, c->recover))
        resend_oldest(c);               /* a partial ACK: the next hole */
    else
        c->recover = 0;
}

static void dup_ack(struct tcb *c)
{
    if (++c->dupacks != DUPACK_THRESHOLD || c->recover)
        return;
    c->recover = c->snd_max;
    resend_oldest(c);
}

static void ack_rx(struct tcb *c, const struct seg *s)
{
    if (seq_lt(c->snd_max, s->ack)) {   /* acknowledges what we never sent */
        c->ack_due = 1;
        return;
    }
    if (seq_lt(s->ack, c->snd_una))     /* old */
        return;
    c->timeouts = 0;                    /* the peer is there */
    int advanced = seq_lt(c->snd_una, s->ack);
    if (advanced) {
        new_ack(c, s->ack);
        if (c->state == T_SYN_RCVD)
            c->state = T_ESTABLISHED;
    } else if (!s->dlen && !(s->flags & TCP_FIN) && s->wnd == c->snd_wnd && c->snd_una != c->snd_max) {
        dup_ack(c);
    }
    c->snd_wnd = s->wnd;
    if (advanced || !c->timer)          /* a duplicate does not restart the clock */
        set_timer(c);
}

static void ring_put(struct tcb *c, const u8 *p, u32 n)
{
    u32 at = (tcb_data_end(c) - c->iss - 1) & (TCP_BUF - 1);
    u32 first = n < TCP_BUF - at ? n : TCP_BUF - at;
    memcpy(c->buf + at, p, first);
    memcpy(c->buf, p + first, n - first);
    c->buf_len += n;
}

/* In-order data and FIN; anything else is dropped with a duplicate ACK. */
static void data_rx(struct tcb *c, const struct seg *s)
{
    u32 fin = !!(s->flags & TCP_FIN), n = s->dlen, skip = 0;
    const u8 *p = s->data;
    if (!n && !fin) {
        if (s->seq != c->rcv_nxt)       /* a window probe (seq rcv_nxt - 1) wants an ACK */
            c->ack_due = 1;
        return;
    }
    c->ack_due = 1;
    if (seq_lt(s->seq, c->rcv_nxt))     /* starts with bytes we have: keep the rest */
        skip = c->rcv_nxt - s->seq;
    if (skip > n || (skip == n && !fin) || c->state != T_ESTABLISHED)
        return;                         /* all old, or after the peer's FIN */
    if (s->seq + skip != c->rcv_nxt) {
        net.st.drops++;                 /* a hole before it: the peer sends it again */
        tcp_send_dup_ack(c);            /* one per segment, at once: the peer counts three (RFC 5681 4.2) */
        return;
    }
    n -= skip;
    u32 take = n < TCP_BUF - c->buf_len ? n : TCP_BUF - c->buf_len;
    ring_put(c, p + skip, take);
    c->rcv_nxt += take;
    net.st.tcp_bytes += take;
    if (fin && take == n) {
        c->rcv_nxt++;
        c->state = T_CLOSE_WAIT;
    }
}

static void conn_free(struct tcb *c) { c->state = T_FREE; }

static void conn_rx(struct tcb *c, const u8 *mac, const struct seg *s)
{
    memcpy(c->mac, mac, 6);             /* the peer may have moved (its MAC changed) */
    if (c->ts_ok && s->has_ts && seq_le(s->seq, c->rcv_nxt) && (int)(s->tsval - c->ts_recent) >= 0)
        c->ts_recent = s->tsval;        /* RFC 7323 4.3: the newest from a segment not past our ACK */
    if (s->flags & TCP_RST) {
        if (seq_le(c->rcv_nxt, s->seq) && seq_le(s->seq, c->rcv_nxt + TCP_BUF))
            conn_free(c);
        return;
    }
    if (s->flags & TCP_SYN) {
        if (c->state == T_SYN_RCVD && s->seq + 1 == c->rcv_nxt)
            c->snd_nxt = c->iss;        /* the SYN again: so is our SYN-ACK */
        else
            c->ack_due = 1;             /* RFC 5961 challenge ACK */
        return;
    }
    if (!(s->flags & TCP_ACK))
        return;
    ack_rx(c, s);
    if (c->state == T_LAST_ACK && c->snd_una == c->snd_max) {
        conn_free(c);                   /* our FIN is acknowledged */
        return;
    }
    data_rx(c, s);
}

void tcp_rx(const u8 *src_mac, u32 src_ip, u8 *t, u32 len)
{
    struct seg s;
    if (!seg_parse(&s, src_ip, t, len)) {
        net.st.drops++;
        return;
    }
    u16 port = get16(t);
    struct tcb *c = get16(t + 2) == ECHO_PORT ? lookup(src_ip, port) : NULL;
    if (c) {
        conn_rx(c, src_mac, &s);
        return;
    }
    if (s.flags & TCP_RST)
        return;
    int syn = (s.flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
    if (!syn || get16(t + 2) != ECHO_PORT || !accept(src_mac, src_ip, port, &s))
        tcp_send_reset(src_mac, src_ip, t, s.dlen);
}

/* Sends what the peer's window allows, our FIN once everything is sent, and
 * a bare ACK if one is due and nothing else carried it. */
static void output(struct tcb *c)
{
    if (c->state == T_SYN_RCVD && c->snd_nxt == c->iss) {  /* the state: seq wraps after 4 GiB */
        if (!tcp_send_syn_ack(c))
            return;
        c->snd_nxt = c->iss + 1;
    }
    u32 end = tcb_data_end(c), wnd_end = c->snd_una + c->snd_wnd;
    while (seq_lt(c->snd_nxt, end) && seq_lt(c->snd_nxt, wnd_end)) {
        u32 n = end - c->snd_nxt, room = wnd_end - c->snd_nxt;
        n = n < room ? n : room;
        n = n < tcb_seg_max(c) ? n : tcb_seg_max(c);
        if (!tcp_send_data(c, c->snd_nxt, n))
            break;
        c->snd_nxt += n;
    }
    if (tcb_fin_due(c) && c->snd_nxt == end && tcp_send_ctl(c, end, TCP_FIN | TCP_ACK)) {
        c->snd_nxt = end + 1;
        c->state = T_LAST_ACK;
    }
    if (c->ack_due)
        tcp_send_ctl(c, c->snd_nxt, TCP_ACK);
    if (seq_lt(c->snd_max, c->snd_nxt))
        c->snd_max = c->snd_nxt;
    if (!c->timer)
        set_timer(c);
}

static void abort_conn(struct tcb *c)
{
    tcp_send_ctl(c, c->snd_nxt, TCP_RST | TCP_ACK);
    conn_free(c);
}

/* Retransmission timeout, or the persist timer of a zero window: the
 * oldest unacknowledged segment again, or one byte past the window. */
static void timeout(struct tcb *c)
{
    if (++c->timeouts > MAX_TIMEOUTS) {
        abort_conn(c);
        return;
    }
    c->rto = c->rto * 2 < RTO_MAX_MS * net.tsc_ms ? c->rto * 2 : RTO_MAX_MS * net.tsc_ms;
    if (c->snd_una != c->snd_max) {
        c->recover = c->snd_max;
        c->dupacks = 0;
        resend_oldest(c);
    } else if (c->buf_len && tcp_send_data(c, c->snd_nxt, 1)) {
        c->snd_nxt++;                   /* the window probe */
    }
    set_timer(c);
}

void tcp_poll(u64 now)
{
    int backwards = now < last_now;     /* resumed on a host whose TSC is behind: fire every timer */
    last_now = now;
    for (int i = 0; i < TCP_MAX_CONNS; i++) {
        struct tcb *c = &conns[i];
        if (c->state == T_FREE)
            continue;
        if (c->timer && (backwards || now >= c->timer))
            timeout(c);
        if (c->state != T_FREE)
            output(c);
    }
}
