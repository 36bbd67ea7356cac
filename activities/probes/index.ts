export { ProbeConfigError, describeError, type ProbeOptions, type ProbeOutcome } from './probe.js';
export { probeTarget, runProbe } from './run.js';
