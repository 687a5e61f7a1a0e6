import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';

const root = path.join(__dirname, '..', '..');
// ELF e_machine values (elf.h): the prebuild must be for the directory's architecture.
const ELF_MACHINE: Record<string, number> = { x64: 0x3e, arm64: 0xb7 };

describe('committed prebuilds of the SEEK_DATA addon', () => {
  for (const [arch, machine] of Object.entries(ELF_MACHINE)) {
    it(`prebuilds/linux-${arch}/ferry.node is a 64-bit little-endian ELF shared object for ${arch}`, () => {
      const elf = fs.readFileSync(path.join(root, 'prebuilds', `linux-${arch}`, 'ferry.node'));
      expect(elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
      expect(elf[4]).toBe(2); // ELFCLASS64
      expect(elf[5]).toBe(1); // little-endian
      expect(elf.readUInt16LE(16)).toBe(3); // ET_DYN
      expect(elf.readUInt16LE(18)).toBe(machine);
    });

    it(`prebuilds/linux-${arch}/ferry.node also exports mallocMmapThreshold (native/memory.c)`, () => {
      const elf = fs.readFileSync(path.join(root, 'prebuilds', `linux-${arch}`, 'ferry.node'));
      expect(elf.includes('mallocMmapThreshold')).toBe(true);
    });
  }
});
