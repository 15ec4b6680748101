// Unit tests of the AML encoder against byte sequences from the ACPI specification and iasl output.
import { expect } from 'chai';
import { eisaId, integer, ioPorts, irqNoFlags, name, nameString, pkg, pkgLength, resourceTemplate, string } from '../../../../machine/boot/aml.js';

const bytes = (a: Uint8Array) => [...a];

describe('boot/aml', () => {
  it('encodes PkgLength in one byte up to 63 and in longer forms beyond', () => {
    expect(bytes(pkgLength(5))).to.deep.equal([6]);
    expect(bytes(pkgLength(62))).to.deep.equal([63]);
    expect(bytes(pkgLength(63))).to.deep.equal([0x41, 0x04], '65 = 0x41: lead byte 0x40 | 1, then 4');
    expect(bytes(pkgLength(0x1000))).to.deep.equal([0x83, 0x00, 0x01], '0x1003 needs three bytes');
  });

  it('encodes name strings with root, dual and multi-name prefixes and pads short segments', () => {
    expect(bytes(nameString('_S5'))).to.deep.equal([0x5f, 0x53, 0x35, 0x5f]);
    expect(bytes(nameString('\\_SB'))).to.deep.equal([0x5c, 0x5f, 0x53, 0x42, 0x5f]);
    expect(bytes(nameString('\\_SB.PCI0'))).to.deep.equal([0x5c, 0x2e, ...[...'_SB_PCI0'].map((c) => c.charCodeAt(0))]);
    expect(nameString('\\_SB.PCI0.ISA').slice(0, 3)).to.deep.equal(Uint8Array.of(0x5c, 0x2f, 3));
    expect(() => nameString('lower')).to.throw(RangeError);
  });

  it('encodes integers in their shortest form', () => {
    expect(bytes(integer(0))).to.deep.equal([0x00]);
    expect(bytes(integer(1))).to.deep.equal([0x01]);
    expect(bytes(integer(0x12))).to.deep.equal([0x0a, 0x12]);
    expect(bytes(integer(0x1234))).to.deep.equal([0x0b, 0x34, 0x12]);
    expect(bytes(integer(0xfec00000))).to.deep.equal([0x0c, 0x00, 0x00, 0xc0, 0xfe]);
    expect(bytes(integer(0x1_0000_0000n))).to.deep.equal([0x0e, 0, 0, 0, 0, 1, 0, 0, 0]);
  });

  it('compresses EISA ids as iasl does', () => {
    expect(bytes(eisaId('PNP0A03'))).to.deep.equal([0x0c, 0x41, 0xd0, 0x0a, 0x03]);
    expect(bytes(eisaId('PNP0501'))).to.deep.equal([0x0c, 0x41, 0xd0, 0x05, 0x01]);
  });

  it('encodes Name(_S5, Package(){0,0,0,0}) as QEMU emits it', () => {
    const s5 = name('_S5', pkg([integer(0), integer(0), integer(0), integer(0)]));
    expect(bytes(s5)).to.deep.equal([0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x06, 0x04, 0, 0, 0, 0]);
    expect(bytes(string('A'))).to.deep.equal([0x0d, 0x41, 0x00]);
  });

  it('closes resource templates with an end tag inside a sized buffer', () => {
    const crs = resourceTemplate([ioPorts(0x3f8, 8), irqNoFlags(4)]);
    expect(bytes(crs)).to.deep.equal([
      0x11, 0x10, 0x0a, 0x0d,
      0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,
      0x22, 0x10, 0x00,
      0x79, 0x00,
    ]);
  });
});
