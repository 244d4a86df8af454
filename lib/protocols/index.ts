/**
 * The inbound protocols, by name (see `types.ts`). Each is one module under this folder; nothing else in the
 * gateway knows which protocol a request speaks.
 */
import { chatProtocol } from './chat/index.js';
import { messagesProtocol } from './messages/index.js';
import { responsesProtocol } from './responses/index.js';
import type { Protocol, ProtocolName } from './types.js';

export const PROTOCOLS: Readonly<Record<ProtocolName, Protocol>> = {
  chat: chatProtocol,
  responses: responsesProtocol,
  messages: messagesProtocol,
};

/** The protocols this build serves. */
export const PROTOCOL_NAMES: readonly ProtocolName[] = Object.keys(PROTOCOLS) as ProtocolName[];

/** The protocol of that name (option schemas accept only `PROTOCOL_NAMES`). */
export function protocolNamed(name: ProtocolName): Protocol {
  return PROTOCOLS[name];
}
