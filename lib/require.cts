/**
 * `require` as seen from this package's own files, in both builds. This file is always compiled to
 * CommonJS (`.cts` → `.cjs`), so the ES module build too can load a dependency synchronously when a factory
 * first needs it: ES modules have no `require`, and `import()` is asynchronous while the factories are not.
 * Dependencies that a gateway may never use (the AWS SDK, yaml, prom-client, http-proxy-middleware) and the
 * ones only a factory needs (undici, express) are loaded through it, so importing the package stays cheap.
 */
export const requireDependency: NodeJS.Require = require;
