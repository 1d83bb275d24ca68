/* Test guest: the per-CPU monitor. Heartbeats once per second, STALL when
 * the TSC jumped by >= stall_ms between two checks, DONE after secs=N. */
#include "user.h"

void mon_init(struct mon *m, u32 cpu)
{
    memset(m, 0, sizeof(*m));
    m->cpu = cpu;
    m->sec = tg.tsc_khz * 1000;
    m->stall_ticks = tg.tsc_khz * cfg.stall_ms;
    m->last = rdtsc();
    m->next_hb = m->last;                       /* first heartbeat at once */
    if (cfg.secs)
        m->deadline = tg_boot_tsc + cfg.secs * m->sec;
}

void mon_stall(struct mon *m, u64 now)
{
    uprintf("STALL cpu=%u ms=%lu seq=%lu\n", m->cpu, (now - m->last) / tg.tsc_khz, m->seq);
}

void mon_hb(struct mon *m, const char *extra)
{
    u64 now = rdtsc();
    m->seq++;
    uprintf("HB cpu=%u seq=%lu ms=%lu%s errs=%lu\n", m->cpu, m->seq, ms_since_boot(now), extra, m->errs);
    m->next_hb += m->sec;
    if (m->next_hb <= now)                      /* fell behind (VM paused): no burst */
        m->next_hb = now + m->sec;
    if (m->deadline && now >= m->deadline)
        mon_done(m);
    m->last = rdtsc();                          /* printing is not a stall */
}

NORETURN void halt_forever(void)
{
    for (;;)
        gate0(G_HALT);
}

NORETURN void mon_done(struct mon *m)
{
    uprintf("DONE cpu=%u errs=%lu\n", m->cpu, m->errs);
    u32 n = atomic_inc(&tg.done);
    if (n >= tg.ncpus)
        upoweroff();
    if (m->cpu == 0) {                          /* do not wait forever for a stuck CPU */
        u64 t0 = rdtsc();
        while (tg.done < tg.ncpus && rdtsc() - t0 < 2 * m->sec)
            gate0(G_HALT);
        upoweroff();
    }
    halt_forever();
}
