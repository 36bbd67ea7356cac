import type { Payload, PayloadCodec } from '@temporalio/common';
import { UNDECODABLE } from '../../common/bounds.js';

const utf8 = new TextEncoder();

/** A JSON payload standing for one that could not be decoded: `{"__undecodable": "<why>"}`. */
export function undecodablePayload(reason: string): Payload {
  return {
    metadata: { encoding: utf8.encode('json/plain') },
    data: utf8.encode(JSON.stringify({ [UNDECODABLE]: reason.slice(0, 500) })),
  };
}

/**
 * The worker's codec: a payload the inner codec cannot decode becomes a marker value instead
 * of an error. A decode error fails the whole workflow activation, and a signal that can never
 * be decoded (sent by anyone who can reach the server, with forged encryption metadata) would
 * fail every later workflow task of its run. With the marker the signal handler refuses the
 * message, and the run's input check keeps failing the task (retried until the worker gets the
 * right keys) instead of failing the run.
 */
export class UndecodableTolerantCodec implements PayloadCodec {
  constructor(private readonly inner: PayloadCodec) {}

  encode(payloads: Payload[]): Promise<Payload[]> {
    return this.inner.encode(payloads);
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return Promise.all(
      payloads.map(async (payload) => {
        try {
          const [decoded] = await this.inner.decode([payload]);
          return decoded!;
        } catch (err) {
          return undecodablePayload(err instanceof Error ? err.message : String(err));
        }
      }),
    );
  }
}
