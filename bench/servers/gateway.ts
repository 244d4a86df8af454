/**
 * A gateway setup under test: `gateway.ts <setup name> <mock url> [emulator url]`. The setup itself (which
 * middlewares, with what options) is defined in `bench/setups.ts`; this file only mounts it:
 * `POST /v1/chat/completions` (or the setup's protocol's path) → `gatewayContext()` → the setup's handlers →
 * `sseErrorWriter()`.
 * Every gateway piece comes from the built package (dist/cjs, see bench/package.ts), as a user runs it.
 */
import express from 'express';
import { gatewayPackage } from '../package.js';
import { setupNamed } from '../setups.js';
import { PROTOCOL_PATHS } from '../workload.js';
import { runChild } from './child.js';
import { listen } from './listen.js';

const [setupName, mockUrl, emulatorUrl] = process.argv.slice(2);
if (!setupName || !mockUrl) throw new Error('gateway.ts <setup name> <mock url> [emulator url]');

void runChild(`gateway ${setupName}`, async () => {
  const setup = setupNamed(setupName);
  if (!setup.build) throw new Error(`'${setupName}' is not a gateway setup`);
  const built = await setup.build({ mockUrl, emulatorUrl });
  if ('skip' in built) {
    process.send?.({ type: 'skipped', reason: built.skip });
    return new Promise<never>(() => undefined); // the parent stops us
  }
  const { gatewayContext, sseErrorWriter, silentLogger } = gatewayPackage();
  const app = express();
  const protocol = setup.protocol ?? 'chat';
  app.post(PROTOCOL_PATHS[protocol], gatewayContext({ protocol }), ...built.handlers, sseErrorWriter({ logger: silentLogger }));
  const server = await listen(app);
  return {
    url: server.url,
    close: async () => {
      await server.close();
      await built.close();
    },
  };
});
