/* echo: CPU 0 reads the serial port's receive side and prints each line it gets back as
 * "ECHO <line>", so a test can check that bytes typed on minihv's console reach the guest.
 * It polls the UART (LSR.DR) once per 10 ms tick: no interrupt is needed, and the other
 * CPUs' console lines never mix with the reading. */
#include "user.h"

#define UART_RBR      0            /* receive buffer (DLAB=0) */
#define UART_LSR      5            /* line status */
#define UART_LSR_DR   0x01         /* a received byte waits in RBR */
#define ECHO_MAX_LINE 200          /* longer lines are printed in pieces */

static u8 uart_in(u32 reg) { return (u8)gate2(G_IN, PORT_COM1 + reg, 1); }

static void echo_line(char *line, u32 *len)
{
    line[*len] = 0;
    uprintf("ECHO %s\n", line);
    *len = 0;
}

NORETURN void work_echo(u32 cpu)
{
    struct mon m;
    char line[ECHO_MAX_LINE + 1];
    u32 len = 0;
    mon_init(&m, cpu);
    for (;;) {
        if (mon_poll(&m))
            mon_hb(&m, "");
        while (uart_in(UART_LSR) & UART_LSR_DR) {
            char c = (char)uart_in(UART_RBR);
            if (c == '\r' || c == '\n') {
                if (len > 0)
                    echo_line(line, &len);
            } else {
                line[len++] = c;
                if (len == ECHO_MAX_LINE)
                    echo_line(line, &len);
            }
        }
        gate0(G_HALT);
    }
}
