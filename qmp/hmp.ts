// A small human monitor (HMP) for `human-monitor-command`: the commands management tools and people actually type.
import { describeFailure, type CommandContext } from './registry.js';

/** The state of one HMP invocation: the context plus the monitor's current CPU. */
interface HmpCall {
  ctx: CommandContext;
  cpuIndex: number;
}

interface HmpCommand {
  name: string;
  aliases?: string[];
  help: string;
  run(call: HmpCall): Promise<string> | string;
}

const INFO_COMMANDS: HmpCommand[] = [
  {
    name: 'cpus',
    help: 'show infos for each CPU',
    run: ({ ctx, cpuIndex }) =>
      ctx.vm
        .vcpus()
        .map((c) => `${c.index === cpuIndex ? '*' : ' '} CPU #${c.index}: thread_id=${c.tid}\n`)
        .join(''),
  },
  {
    name: 'kvm',
    help: 'show KVM information',
    run: ({ ctx }) => {
      const kvm = ctx.vm.kvm();
      return `kvm support: ${kvm.present ? (kvm.enabled ? 'enabled' : 'disabled') : 'not compiled'}\n`;
    },
  },
  {
    name: 'name',
    help: 'show the current VM name',
    run: ({ ctx }) => (ctx.vm.name === undefined ? '' : `${ctx.vm.name}\n`),
  },
  {
    name: 'status',
    help: 'show the current VM status (running|paused)',
    run: ({ ctx }) => {
      // QEMU prints "paused (<state>)" for every stopped state other than plain 'paused'.
      const state = ctx.vm.runState();
      if (state === 'running') return 'VM status: running\n';
      return state === 'paused' ? 'VM status: paused\n' : `VM status: paused (${state})\n`;
    },
  },
  {
    name: 'version',
    help: 'show the version of QEMU',
    run: ({ ctx }) => {
      // QEMU 7.2 prints the package right after the triple, without a separator; so do we.
      const { qemu, package: pkg } = ctx.version;
      return `${qemu.major}.${qemu.minor}.${qemu.micro}${pkg}\n`;
    },
  },
];

/** A command that takes no arguments, runs a VM action and prints nothing on success. */
function action(name: string, help: string, act: (ctx: CommandContext) => void | Promise<void>, aliases?: string[]): HmpCommand {
  return {
    name,
    aliases,
    help,
    run: async ({ ctx }) => {
      await act(ctx);
      return '';
    },
  };
}

const COMMANDS: HmpCommand[] = [
  action('cont', 'resume emulation', (ctx) => ctx.vm.cont(), ['c']),
  action('stop', 'stop emulation', (ctx) => ctx.vm.stop()),
  action('system_reset', 'reset the system', (ctx) => ctx.vm.systemReset()),
  action('system_powerdown', 'send system power down event', (ctx) => ctx.vm.systemPowerdown()),
];

function helpText(): string {
  const lines = [...COMMANDS.map((c) => [c.name, ...(c.aliases ?? [])].join('|')), 'info', 'quit|q', 'help|?']
    .sort()
    .map((n) => n + '\n');
  return lines.join('');
}

function infoHelp(): string {
  return INFO_COMMANDS.map((c) => `info ${c.name}  -- ${c.help}\n`).join('');
}

/**
 * Runs one HMP command line and returns its output with QEMU's line endings ("\r\n"). Unknown commands are not QMP
 * errors: like QEMU, the text "unknown command: 'foo'" is the successful result. `quit` is handled by the caller,
 * which owns the reply-then-SHUTDOWN sequence; it is recognised here through `onQuit`.
 */
export async function runHmp(commandLine: string, ctx: CommandContext, cpuIndex: number, onQuit: () => void): Promise<string> {
  const words = commandLine.trim().split(/\s+/).filter((w) => w !== '');
  const call: HmpCall = { ctx, cpuIndex };
  let out: string;
  if (words.length === 0) {
    out = '';
  } else if (words[0] === 'info') {
    if (words.length === 1) {
      out = infoHelp();
    } else {
      const sub = INFO_COMMANDS.find((c) => c.name === words[1]);
      if (sub === undefined) out = `unknown command: 'info ${words[1]}'\n`;
      else if (words.length > 2) out = `info ${sub.name}: extraneous characters at the end of line\n`;
      else out = await guarded(call, () => sub.run(call));
    }
  } else if (words[0] === 'quit' || words[0] === 'q') {
    onQuit();
    out = '';
  } else if (words[0] === 'help' || words[0] === '?') {
    out = helpText();
  } else {
    const cmd = COMMANDS.find((c) => c.name === words[0] || c.aliases?.includes(words[0]));
    if (cmd === undefined) out = `unknown command: '${words[0]}'\n`;
    else if (words.length > 1) out = `${cmd.name}: extraneous characters at the end of line\n`;
    else out = await guarded(call, () => cmd.run(call));
  }
  return out.replace(/\n/g, '\r\n');
}

/** HMP reports a failed command as text ("Error: ..."), not as a QMP error. */
async function guarded(call: HmpCall, run: () => Promise<string> | string): Promise<string> {
  try {
    return await run();
  } catch (e) {
    return `Error: ${describeFailure(e, call.ctx.logger, 'human-monitor-command').desc}\n`;
  }
}
