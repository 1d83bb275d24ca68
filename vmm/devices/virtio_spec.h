// vmm/devices/virtio_spec.h — the numbers of the VIRTIO 1.2 specification that minihv uses.
//
// Owns: feature bits, device status bits, split-ring layout and flags, virtio-mmio register offsets,
// virtio-blk request types and status codes, virtio-net's header, config and control commands. Every other virtio file names these, never a literal.
#pragma once

#include <cstdint>

namespace minihv::virtio {

// --- device status (2.1) ---
constexpr uint32_t kStatusAcknowledge = 1;
constexpr uint32_t kStatusDriver = 2;
constexpr uint32_t kStatusDriverOk = 4;
constexpr uint32_t kStatusFeaturesOk = 8;
constexpr uint32_t kStatusNeedsReset = 64;
constexpr uint32_t kStatusFailed = 128;
constexpr uint32_t kStatusDriverBits =
    kStatusAcknowledge | kStatusDriver | kStatusDriverOk | kStatusFeaturesOk | kStatusFailed;

// --- feature bits (6) ---
constexpr uint64_t feature(unsigned bit) { return uint64_t{1} << bit; }
constexpr uint64_t kFRingIndirectDesc = feature(28);
constexpr uint64_t kFRingEventIdx = feature(29);
constexpr uint64_t kFVersion1 = feature(32);
// What Virtqueue implements; a device offers these unless it has a reason not to.
constexpr uint64_t kRingFeatures = kFRingIndirectDesc | kFRingEventIdx;

// --- split virtqueue (2.7) ---
constexpr uint16_t kDescFNext = 1;
constexpr uint16_t kDescFWrite = 2;
constexpr uint16_t kDescFIndirect = 4;
constexpr uint16_t kAvailFNoInterrupt = 1;
constexpr uint16_t kUsedFNoNotify = 1;
constexpr uint32_t kDescSize = 16;        // addr u64, len u32, flags u16, next u16
constexpr uint32_t kUsedElemSize = 8;     // id u32, len u32
constexpr uint32_t kRingHeaderSize = 4;   // flags u16, idx u16 (avail and used)
constexpr uint64_t kDescAlign = 16, kAvailAlign = 2, kUsedAlign = 4;
constexpr uint16_t kMaxQueueSize = 32768;

// --- virtio-mmio registers (4.2.2), offsets in the device window ---
namespace mmio {
constexpr uint64_t kMagicValue = 0x000;
constexpr uint64_t kVersion = 0x004;
constexpr uint64_t kDeviceId = 0x008;
constexpr uint64_t kVendorId = 0x00c;
constexpr uint64_t kDeviceFeatures = 0x010;
constexpr uint64_t kDeviceFeaturesSel = 0x014;
constexpr uint64_t kDriverFeatures = 0x020;
constexpr uint64_t kDriverFeaturesSel = 0x024;
constexpr uint64_t kQueueSel = 0x030;
constexpr uint64_t kQueueNumMax = 0x034;
constexpr uint64_t kQueueNum = 0x038;
constexpr uint64_t kQueueReady = 0x044;
constexpr uint64_t kQueueNotify = 0x050;
constexpr uint64_t kInterruptStatus = 0x060;
constexpr uint64_t kInterruptAck = 0x064;
constexpr uint64_t kStatus = 0x070;
constexpr uint64_t kQueueDescLow = 0x080;
constexpr uint64_t kQueueDescHigh = 0x084;
constexpr uint64_t kQueueDriverLow = 0x090;
constexpr uint64_t kQueueDriverHigh = 0x094;
constexpr uint64_t kQueueDeviceLow = 0x0a0;
constexpr uint64_t kQueueDeviceHigh = 0x0a4;
constexpr uint64_t kShmSel = 0x0ac;
constexpr uint64_t kShmLenLow = 0x0b0;
constexpr uint64_t kShmLenHigh = 0x0b4;
constexpr uint64_t kShmBaseLow = 0x0b8;
constexpr uint64_t kShmBaseHigh = 0x0bc;
constexpr uint64_t kQueueReset = 0x0c0;
constexpr uint64_t kConfigGeneration = 0x0fc;
constexpr uint64_t kConfig = 0x100;

constexpr uint32_t kMagic = 0x74726976;  // "virt", little-endian
constexpr uint32_t kVersion2 = 2;        // the only one we speak: no legacy devices
constexpr uint32_t kVendor = 0x4d564e48;  // "HNVM": ours; drivers do not match on it
constexpr uint32_t kIntUsedBuffer = 1;
constexpr uint32_t kIntConfigChange = 2;
constexpr uint32_t kShmLenNone = 0xffffffff;  // "no such shared memory region"
}  // namespace mmio

// --- virtio-blk (5.2) ---
namespace blk {
constexpr uint32_t kDeviceId = 2;
constexpr uint64_t kFSegMax = feature(2);
constexpr uint64_t kFRo = feature(5);
constexpr uint64_t kFBlkSize = feature(6);
constexpr uint64_t kFFlush = feature(9);

constexpr uint32_t kSectorSize = 512;
constexpr uint32_t kSectorShift = 9;
constexpr uint32_t kHeaderSize = 16;  // type u32, reserved u32, sector u64
constexpr uint32_t kIdBytes = 20;     // GET_ID answer, not NUL-terminated when full

constexpr uint32_t kTIn = 0;
constexpr uint32_t kTOut = 1;
constexpr uint32_t kTFlush = 4;
constexpr uint32_t kTGetId = 8;

constexpr uint8_t kSOk = 0;
constexpr uint8_t kSIoErr = 1;
constexpr uint8_t kSUnsupp = 2;

// Config space layout offsets (struct virtio_blk_config).
constexpr uint32_t kCfgCapacity = 0;   // u64, in 512-byte sectors
constexpr uint32_t kCfgSizeMax = 8;    // u32
constexpr uint32_t kCfgSegMax = 12;    // u32
constexpr uint32_t kCfgBlkSize = 20;   // u32
constexpr uint32_t kCfgSize = 24;      // we expose up to blk_size; the rest reads as zero
}  // namespace blk

// --- virtio-net (5.1) ---
namespace net {
constexpr uint32_t kDeviceId = 1;
constexpr uint64_t kFCsum = feature(0);          // device takes partial checksums (guest -> tap)
constexpr uint64_t kFGuestCsum = feature(1);     // driver takes partial checksums (tap -> guest)
constexpr uint64_t kFMac = feature(5);
constexpr uint64_t kFGuestTso4 = feature(7);
constexpr uint64_t kFGuestTso6 = feature(8);
constexpr uint64_t kFGuestEcn = feature(9);
constexpr uint64_t kFHostTso4 = feature(11);
constexpr uint64_t kFHostTso6 = feature(12);
constexpr uint64_t kFHostEcn = feature(13);
constexpr uint64_t kFMrgRxbuf = feature(15);
constexpr uint64_t kFStatus = feature(16);
constexpr uint64_t kFCtrlVq = feature(17);
constexpr uint64_t kFGuestAnnounce = feature(21);
constexpr uint64_t kFMq = feature(22);  // more than one queue pair (max_virtqueue_pairs in config)

// struct virtio_net_hdr_v1: flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16,
// csum_offset u16, num_buffers u16. With VERSION_1 every frame carries all 12 bytes.
constexpr uint32_t kHdrSize = 12;
constexpr uint32_t kHdrFlags = 0;
constexpr uint32_t kHdrGsoType = 1;
constexpr uint32_t kHdrNumBuffers = 10;
constexpr uint8_t kHdrFNeedsCsum = 1;
constexpr uint8_t kGsoNone = 0;

// Config space (struct virtio_net_config): mac[6], status u16, max_virtqueue_pairs u16.
constexpr uint32_t kCfgMac = 0;
constexpr uint32_t kCfgStatus = 6;
constexpr uint32_t kCfgMaxPairs = 8;
constexpr uint32_t kCfgSize = 10;
constexpr uint16_t kSLinkUp = 1;
constexpr uint16_t kSAnnounce = 2;

// Queues of a single-pair device with a control queue (and of any device whose driver did not
// negotiate MQ). With MQ, pair i is queues 2i (RX) and 2i + 1 (TX) and the control queue comes
// after the last pair (5.1.2).
constexpr unsigned kRxQueue = 0;
constexpr unsigned kTxQueue = 1;
constexpr unsigned kCtrlQueue = 2;
constexpr unsigned rx_queue(unsigned pair) { return 2 * pair; }
constexpr unsigned tx_queue(unsigned pair) { return 2 * pair + 1; }

// Control queue (5.1.6.5): class u8, command u8, data..., then one writable ack byte.
constexpr uint8_t kCtrlClassAnnounce = 3;
constexpr uint8_t kCtrlAnnounceAck = 0;
constexpr uint8_t kCtrlClassMq = 4;
constexpr uint8_t kCtrlMqVqPairsSet = 0;  // data: virtqueue_pairs u16, 1 to max_virtqueue_pairs
constexpr uint32_t kCtrlHeaderSize = 2;   // class, command
constexpr uint32_t kCtrlMqDataSize = 2;
constexpr uint8_t kCtrlOk = 0;
constexpr uint8_t kCtrlErr = 1;
}  // namespace net

}  // namespace minihv::virtio
