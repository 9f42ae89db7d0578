#!/usr/bin/env python3
"""Writes the hwloc v2 XML test topologies of tests/data.

The files are checked in; this script is how they were made, and how to
change them: edit, run it from this folder, and check `lstopo --input FILE`.

dgx_like.xml: two sockets of 8 cores (2 PUs each), one NUMA node each; per
socket two PCIe host bridges, each with two PCIe switches; behind every
switch one NVIDIA GPU (class 0x0302) and one Mellanox NIC (mlx5_N, with its
IPoIB netdev ibN). GPU N and mlx5_N share switch N, so four of each are local
to a socket. A BMC's VGA controller (ASPEED) sits on socket 0: it is a PCI
display device, but not a GPU anything should run on.

two_gpu_one_nic.xml: two sockets of 4 cores; GPU 0 alone on socket 0, GPU 1
and the only NIC (a RoCE mlx5_0 with netdev ens1f0) behind one switch on
socket 1.
"""

import itertools

GIB = 1 << 30


class Writer:
    def __init__(self):
        self.lines = []
        self.gp = itertools.count(1)
        self.depth = 0

    def open(self, attrs, infos=(), leaf=False):
        text = " ".join(f'{k}="{v}"' for k, v in attrs.items())
        pad = "  " * (self.depth + 1)
        gp = next(self.gp)
        if leaf and not infos:
            self.lines.append(f'{pad}<object {text} gp_index="{gp}"/>')
            return
        self.lines.append(f'{pad}<object {text} gp_index="{gp}">')
        for name, value in infos:
            self.lines.append(f'{pad}  <info name="{name}" value="{value}"/>')
        if leaf:
            self.lines.append(f"{pad}</object>")
        else:
            self.depth += 1

    def close(self):
        self.depth -= 1
        self.lines.append(f"{'  ' * (self.depth + 1)}</object>")


def mask(bits):
    value = 0
    for b in bits:
        value |= 1 << b
    words = []
    while True:
        words.append(f"0x{value & 0xFFFFFFFF:08x}")
        value >>= 32
        if value == 0:
            break
    return ",".join(reversed(words))


def sets(pus, nodes):
    return {"cpuset": mask(pus), "complete_cpuset": mask(pus), "nodeset": mask(nodes), "complete_nodeset": mask(nodes)}


def busid(bus, dev=0, func=0):
    return f"0000:{bus:02x}:{dev:02x}.{func}"


def host_bridge(w, first, last):
    w.open({"type": "Bridge", "bridge_type": "0-1", "depth": 0, "bridge_pci": f"0000:[{first:02x}-{last:02x}]"})


def pci_bridge(w, bus, dev, first, last, depth):
    w.open({"type": "Bridge", "bridge_type": "1-1", "depth": depth, "bridge_pci": f"0000:[{first:02x}-{last:02x}]",
            "pci_busid": busid(bus, dev), "pci_type": "0604 [1000:c010] [1000:a064] b0", "pci_link_speed": "31.507692"},
           [("PCIVendor", "Broadcom / LSI"), ("PCIDevice", "PEX890xx PCIe Gen 5 Switch")])


def pci_device(w, bus, pci_type, link, vendor, device):
    w.open({"type": "PCIDev", "pci_busid": busid(bus), "pci_type": pci_type, "pci_link_speed": link},
           [("PCIVendor", vendor), ("PCIDevice", device)])


def osdev(w, name, kind, subtype=None, infos=()):
    attrs = {"type": "OSDev", "name": name, "osdev_type": kind}
    if subtype:
        attrs["subtype"] = subtype
    w.open(attrs, infos, leaf=True)


def gpu(w, bus, index):
    pci_device(w, bus, "0302 [10de:20b2] [10de:147f] a1", "31.507692", "NVIDIA Corporation", "GA100 [A100 SXM4 80GB]")
    osdev(w, f"cuda{index}", 5, "CUDA", [("CoProcType", "CUDA"), ("Backend", "CUDA"), ("GPUVendor", "NVIDIA Corporation")])
    osdev(w, f"nvml{index}", 1, "NVML", [("Backend", "NVML"), ("GPUVendor", "NVIDIA Corporation")])
    w.close()


def nic(w, bus, index, netdev, ethernet):
    if ethernet:
        pci_device(w, bus, "0200 [15b3:1017] [15b3:0007] 00", "15.753846", "Mellanox Technologies",
                   "MT27800 Family [ConnectX-5]")
        osdev(w, netdev, 2, None, [("Address", f"b8:ce:f6:00:00:{index:02x}")])
    else:
        pci_device(w, bus, "0207 [15b3:101b] [15b3:0006] 00", "31.507692", "Mellanox Technologies",
                   "MT28908 Family [ConnectX-6]")
        osdev(w, netdev, 2, None, [("Address", f"00:00:10:29:fe:80:00:00:00:00:00:00:b8:ce:f6:03:00:00:00:{index:02x}"),
                                   ("Port", "1")])
    osdev(w, f"mlx5_{index}", 3, "OpenFabrics",
          [("NodeGUID", f"b8ce:f603:0000:00{index:02x}"), ("SysImageGUID", f"b8ce:f603:0000:00{index:02x}"),
           ("Port1State", "4"), ("Port1LID", f"0x{index + 1:x}"), ("Port1LMC", "0")])
    w.close()


def document(w, packages, cores, pus_per_core, memory, description, io):
    pus_total = packages * cores * pus_per_core
    nodes = list(range(packages))
    root = {"type": "Machine", "os_index": 0, **sets(range(pus_total), nodes)}
    root["allowed_cpuset"] = mask(range(pus_total))
    root["allowed_nodeset"] = mask(nodes)
    w.open(root, [("Backend", "Linux"), ("OSName", "Linux"), ("Architecture", "x86_64"),
                  ("HostName", description)])
    for p in range(packages):
        # Linux numbers the second hyperthreads of all cores after the first ones.
        def pus_of(c):
            return [t * packages * cores + p * cores + c for t in range(pus_per_core)]
        mine = sorted(pu for c in range(cores) for pu in pus_of(c))
        w.open({"type": "Package", "os_index": p, **sets(mine, [p])}, [("CPUVendor", "GenuineIntel"),
                                                                       ("CPUModel", "Example Xeon")])
        w.open({"type": "NUMANode", "os_index": p, **sets(mine, [p]), "local_memory": memory}, leaf=True)
        for c in range(cores):
            w.open({"type": "Core", "os_index": c, **sets(pus_of(c), [p])})
            for pu in pus_of(c):
                w.open({"type": "PU", "os_index": pu, **sets([pu], [p])}, leaf=True)
            w.close()
        io(w, p)
        w.close()
    w.close()
    head = ['<?xml version="1.0" encoding="UTF-8"?>', '<!DOCTYPE topology SYSTEM "hwloc2.dtd">',
            '<topology version="2.0">']
    # The "length" attributes count characters of the text, as hwloc writes them.
    indexes = "".join(f"{n} " for n in nodes)
    values = "".join("10 " if a == b else "21 " for a in nodes for b in nodes)
    tail = [f'  <distances2 type="NUMANode" nbobjs="{packages}" kind="5" name="NUMALatency" indexing="os">',
            f'    <indexes length="{len(indexes)}">{indexes}</indexes>',
            f'    <u64values length="{len(values)}">{values}</u64values>',
            "  </distances2>", "</topology>", ""]
    return "\n".join(head + w.lines + tail)


def dgx_io(w, p):
    for h in range(2):
        k = 2 * p + h  # host bridge, 0..3
        first = 0x10 + 0x20 * k
        host_bridge(w, first, first + 0x1F)
        if k == 0:
            # The BMC's VGA behind its own port: a display device, not a GPU.
            pci_bridge(w, first, 0x1F, first + 0x1E, first + 0x1E, 1)
            pci_device(w, first + 0x1E, "0300 [1a03:2000] [1a03:2000] 52", "0.250000", "ASPEED Technology, Inc.",
                       "ASPEED Graphics Family")
            w.close()
            w.close()
        for s in range(2):
            n = 2 * k + s  # GPU and NIC index
            sw = first + 1 + s * 0x0F
            pci_bridge(w, first, s, sw, sw + 2, 1)
            pci_bridge(w, sw, 0, sw + 1, sw + 1, 2)
            gpu(w, sw + 1, n)
            w.close()
            pci_bridge(w, sw, 1, sw + 2, sw + 2, 2)
            nic(w, sw + 2, n, f"ib{n}", ethernet=False)
            w.close()
            w.close()
        w.close()


def small_io(w, p):
    if p == 0:
        host_bridge(w, 0x10, 0x1F)
        pci_bridge(w, 0x10, 0, 0x11, 0x11, 1)
        gpu(w, 0x11, 0)
        w.close()
        w.close()
    else:
        host_bridge(w, 0x80, 0x8F)
        pci_bridge(w, 0x80, 0, 0x81, 0x83, 1)
        pci_bridge(w, 0x81, 0, 0x82, 0x82, 2)
        gpu(w, 0x82, 1)
        w.close()
        pci_bridge(w, 0x81, 1, 0x83, 0x83, 2)
        nic(w, 0x83, 0, "ens1f0", ethernet=True)
        w.close()
        w.close()
        w.close()


if __name__ == "__main__":
    with open("dgx_like.xml", "w") as f:
        f.write(document(Writer(), 2, 8, 2, 512 * GIB, "dgx-like", dgx_io))
    with open("two_gpu_one_nic.xml", "w") as f:
        f.write(document(Writer(), 2, 4, 1, 64 * GIB, "two-gpu-one-nic", small_io))
