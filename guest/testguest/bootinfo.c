/* Test guest: read the PVH start_info (command line, memory map, RSDP).
 * Everything is copied out at boot: later workloads may overwrite RAM. */
#include "user.h"

#define START_MAGIC 0x336ec578

char tg_cmdline[1024];
struct memrange tg_memmap[TG_MAX_MEMMAP];
int tg_nmemmap;
u64 tg_rsdp_pa;

static u32 rd32(u64 a) { u32 v; memcpy(&v, (const void *)a, 4); return v; }
static u64 rd64(u64 a) { u64 v; memcpy(&v, (const void *)a, 8); return v; }

void bootinfo_read(void)
{
    u64 si = tg_start_info_pa;
    if (!si || rd32(si) != START_MAGIC) {
        cfg.wl = W_IDLE;
        fmt(cfg.error, sizeof(cfg.error), "no PVH start_info at 0x%lx", si);
        return;
    }
    u32 version = rd32(si + 4);
    u64 cmd = rd64(si + 24);
    tg_rsdp_pa = rd64(si + 32);
    if (cmd) {
        usize n = 0;
        for (const char *c = (const char *)cmd; *c && n < sizeof(tg_cmdline) - 1; c++)
            tg_cmdline[n++] = *c == '\n' || *c == '\t' ? ' ' : *c;
    }
    if (version >= 1) {
        u64 mm = rd64(si + 40);
        u32 n = rd32(si + 48);
        for (u32 i = 0; mm && i < n && tg_nmemmap < TG_MAX_MEMMAP; i++, mm += 24) {
            struct memrange *r = &tg_memmap[tg_nmemmap++];
            r->base = rd64(mm);
            r->size = rd64(mm + 8);
            r->type = rd32(mm + 16);
            if (r->type == 1)
                tg.mem_bytes += r->size;
        }
    }
}

int addr_is_ram(u64 a)
{
    for (int i = 0; i < tg_nmemmap; i++)
        if (tg_memmap[i].type == 1 && a >= tg_memmap[i].base && a - tg_memmap[i].base < tg_memmap[i].size)
            return 1;
    return 0;
}
