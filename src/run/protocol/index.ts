// The job protocol of fd 3/4 (man/pmjq-protocol.7): its public side.

export { Protocol } from './protocol.js';
export { waitCode } from './core.js';
export { LIMITS, type EnqueueRequest, type Limits, type ProtocolHost, type RepeatInfo } from './types.js';
export type { JobOwner } from '../owner.js';
