// A small hand-written SVG line chart (no plotting dependency): remaining dirty MiB per pass, one line per VMM.

/** One point of a VMM's line: the dirty MiB at the start of pass `pass`. */
export interface PassPoint {
  pass: number;
  mib: number;
  atMs: number;
  /** QEMU only: how much its remaining may have shrunk between the sync and the reply that showed it. */
  slackMiB: number;
  /** The pass sent with the guest paused. */
  paused: boolean;
}

const xml = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A step of 1, 2 or 5 times a power of ten that splits `range` into at most `maxTicks` parts. */
function niceStep(range: number, maxTicks: number): number {
  const raw = Math.max(range, 1e-9) / maxTicks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((x) => x >= raw) ?? 10 * mag;
}

export interface ChartLine {
  label: string;
  color: string;
  points: PassPoint[];
}

/** A plain SVG line chart: x = pass, y = remaining MiB, one line per VMM, axes, grid, legend and a caption. */
export function passChartSvg(title: string, subtitle: string, lines: ChartLine[], caption: string[]): string {
  const W = 820;
  const plot = { x: 80, y: 64, w: 700, h: 340 };
  const H = plot.y + plot.h + 60 + caption.length * 16 + 10;
  const all = lines.flatMap((l) => l.points.filter((p) => p.pass >= 2));
  const maxPass = Math.max(3, ...all.map((p) => p.pass));
  const xStep = Math.max(1, niceStep(maxPass - 2, 12));
  const x0 = 2;
  const x1 = Math.ceil(maxPass / xStep) * xStep;
  const yStep = niceStep(Math.max(1, ...all.map((p) => p.mib)), 8);
  const y1 = Math.ceil(Math.max(1, ...all.map((p) => p.mib)) / yStep) * yStep;
  const X = (pass: number) => plot.x + ((pass - x0) / Math.max(1, x1 - x0)) * plot.w;
  const Y = (mib: number) => plot.y + plot.h - (mib / y1) * plot.h;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${xml(title)}</text>`);
  out.push(`<text x="${W / 2}" y="44" text-anchor="middle" fill="#444">${xml(subtitle)}</text>`);
  // Grid, ticks and tick labels.
  for (let v = 0; v <= y1 + 1e-9; v += yStep) {
    const y = Y(v).toFixed(1);
    out.push(`<line x1="${plot.x}" y1="${y}" x2="${plot.x + plot.w}" y2="${y}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${plot.x - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${+v.toFixed(6)}</text>`);
  }
  for (let p = x0; p <= x1; p += xStep) {
    const x = X(p).toFixed(1);
    out.push(`<line x1="${x}" y1="${plot.y}" x2="${x}" y2="${plot.y + plot.h}" stroke="#f0f0f0"/>`);
    out.push(`<line x1="${x}" y1="${plot.y + plot.h}" x2="${x}" y2="${plot.y + plot.h + 5}" stroke="black"/>`);
    out.push(`<text x="${x}" y="${plot.y + plot.h + 18}" text-anchor="middle">${p}</text>`);
  }
  // Axes and their labels.
  out.push(`<line x1="${plot.x}" y1="${plot.y + plot.h}" x2="${plot.x + plot.w}" y2="${plot.y + plot.h}" stroke="black"/>`);
  out.push(`<line x1="${plot.x}" y1="${plot.y}" x2="${plot.x}" y2="${plot.y + plot.h}" stroke="black"/>`);
  out.push(`<text x="${plot.x + plot.w / 2}" y="${plot.y + plot.h + 40}" text-anchor="middle">pass (pass 1, all of memory, not drawn)</text>`);
  out.push(`<text transform="translate(22 ${plot.y + plot.h / 2}) rotate(-90)" text-anchor="middle">dirty memory left at the pass's start (MiB)</text>`);
  // One line per VMM; the last point (the set sent with the guest paused) as a ring.
  for (const l of lines) {
    const pts = l.points.filter((p) => p.pass >= 2);
    if (!pts.length) continue;
    out.push(`<polyline fill="none" stroke="${l.color}" stroke-width="2" points="${pts.map((p) => `${X(p.pass).toFixed(1)},${Y(p.mib).toFixed(1)}`).join(' ')}"/>`);
    pts.forEach((p) => {
      const last = p.paused;
      out.push(`<circle cx="${X(p.pass).toFixed(1)}" cy="${Y(p.mib).toFixed(1)}" r="${last ? 6 : 3.5}" fill="${last ? 'white' : l.color}" stroke="${l.color}" stroke-width="2"><title>${xml(`${l.label.split(':')[0]}: pass ${p.pass}, ${p.mib.toFixed(1)} MiB at ${p.atMs.toFixed(0)} ms`)}</title></circle>`);
    });
  }
  // Legend, top right inside the plot.
  const lw = Math.max(300, 60 + 6.8 * Math.max(...lines.map((l) => l.label.length)));
  const lx = plot.x + plot.w - lw - 10;
  out.push(`<rect x="${lx}" y="${plot.y + 10}" width="${lw}" height="${lines.length * 20 + 30}" fill="white" stroke="#bbb"/>`);
  lines.forEach((l, i) => {
    const y = plot.y + 28 + i * 20;
    out.push(`<line x1="${lx + 10}" y1="${y}" x2="${lx + 40}" y2="${y}" stroke="${l.color}" stroke-width="2"/><circle cx="${lx + 25}" cy="${y}" r="3.5" fill="${l.color}"/>`);
    out.push(`<text x="${lx + 48}" y="${y}" dominant-baseline="middle">${xml(l.label)}</text>`);
  });
  const ly = plot.y + 28 + lines.length * 20;
  out.push(`<circle cx="${lx + 25}" cy="${ly}" r="6" fill="white" stroke="#666" stroke-width="2"/><text x="${lx + 48}" y="${ly}" dominant-baseline="middle">the last pass, sent with the guest paused</text>`);
  caption.forEach((c, i) => out.push(`<text x="20" y="${plot.y + plot.h + 64 + i * 16}" fill="#333" font-size="11">${xml(c)}</text>`));
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** The run of median total time among the completed ones (any run when none completed), to stand for a VMM in the chart. */
