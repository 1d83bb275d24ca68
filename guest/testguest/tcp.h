/* Test guest: the TCP echo server's connection block, shared by tcp.c (the
 * state machine) and tcp_out.c (building and sending segments). */
#ifndef TG_TCP_H
#define TG_TCP_H

#include "net.h"

#define TCP_MAX_CONNS 4
#define TCP_BUF 16384                   /* per connection, a power of two: the receive window */
#define TCP_HDR_LEN 20
#define TCP_OPT_END 0                   /* option kinds and lengths (RFC 9293 3.2, RFC 7323 3) */
#define TCP_OPT_NOP 1
#define TCP_OPT_MSS 2
#define TCP_OPT_MSS_LEN 4
#define TCP_OPT_TS 8
#define TCP_OPT_TS_LEN 10
#define TCP_OPT_TS_SPACE 12             /* NOP, NOP, timestamps: what we append to every header */
#define TCP_MSS (IP_MTU - IP_HDR_LEN - TCP_HDR_LEN)
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

/* We only ever close after the peer did (an echo server has nothing to say
 * first), so there is no FIN_WAIT or TIME_WAIT: CLOSE_WAIT echoes what is
 * left, LAST_ACK waits for our FIN's ACK. */
enum tcp_state { T_FREE, T_SYN_RCVD, T_ESTABLISHED, T_CLOSE_WAIT, T_LAST_ACK };

/* One connection. Bytes received in order are appended to buf and stay
 * there until the peer acknowledges their echo: buf holds sequence numbers
 * [buf_seq, buf_seq + buf_len), and the window we advertise is the room
 * left, so we never take more than we can keep. */
struct tcb {
    enum tcp_state state;
    u8 mac[6];
    u32 ip;
    u16 port;
    u16 mss;                            /* the peer's, capped at ours */
    u8 ts_ok;                           /* both sent timestamps (RFC 7323) on the SYN */
    u32 ts_recent;                      /* the peer's TSval we echo */
    u32 iss, snd_una, snd_nxt, snd_max, snd_wnd, rcv_nxt;
    u32 recover;                        /* snd_max when loss recovery began; 0 = not recovering */
    u32 buf_seq, buf_len, adv_wnd;      /* adv_wnd: the window in our last segment */
    u8 ack_due, dupacks, timeouts;
    u64 rto, timer;                     /* TSC ticks; timer 0 = off */
    u8 buf[TCP_BUF];
};

static inline int seq_lt(u32 a, u32 b) { return (int)(a - b) < 0; }
static inline int seq_le(u32 a, u32 b) { return (int)(a - b) <= 0; }
static inline u32 tcb_data_end(const struct tcb *c) { return c->buf_seq + c->buf_len; }
/* Payload bytes per segment: the MSS counts no options. */
static inline u32 tcb_seg_max(const struct tcb *c) { return c->mss - (c->ts_ok ? TCP_OPT_TS_SPACE : 0); }
static inline int tcb_fin_due(const struct tcb *c) { return c->state == T_CLOSE_WAIT || c->state == T_LAST_ACK; }

/* tcp_out.c: each returns 0 when no TX buffer was free (nothing sent). */
int tcp_send_syn_ack(struct tcb *c);
int tcp_send_data(struct tcb *c, u32 seq, u32 n);  /* n bytes of buf from seq, ACK|PSH */
int tcp_send_ctl(struct tcb *c, u32 seq, u8 flags); /* no data: ACK, FIN|ACK, RST|ACK */
/* A duplicate ACK: the same window as our last segment (when we still have
 * that room), or the peer does not count it as a duplicate. */
int tcp_send_dup_ack(struct tcb *c);
/* The reset for a segment nobody listens to (RFC 793 "reset generation"). */
void tcp_send_reset(const u8 *mac, u32 ip, const u8 *seg, u32 dlen);

#endif
