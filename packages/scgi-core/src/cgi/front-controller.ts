/**
 * PHP front controllers (Laravel, Symfony, WordPress, Drupal...): every path under the mount
 * runs one script, which routes on REQUEST_URI / PATH_INFO itself.
 *
 * The script is fixed by configuration and never taken from the request path. The classic nginx
 * trap is `fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name` with a
 * `location ~ \.php$`: `/uploads/evil.jpg/x.php` or `/uploads/evil.php/x` then names a file a
 * user uploaded, and PHP's `cgi.fix_pathinfo` walks back to it and runs it. Here SCRIPT_FILENAME is
 * always `root + script`, whatever the path, so an uploaded `.php` file is never executed.
 */
import { InvalidOptionError } from '../errors.js';
import type { EnvPair } from '../types.js';
import type { ParamsContext, ParamsFunction } from './env.js';

export interface PhpFrontControllerOptions {
  /**
   * The document root on the PHP backend's disk (an absolute path: the app's `public/`
   * directory), sent as DOCUMENT_ROOT. It is a path on the backend's machine, not checked here.
   */
  root: string;
  /**
   * The one script every request runs, relative to `root`, starting with `/`.
   * @default "/index.php"
   */
  script?: string;
}

/**
 * `params` for a PHP front controller: SCRIPT_FILENAME = `root + script` (always),
 * DOCUMENT_ROOT = `root`, SCRIPT_NAME = mount + `script` (`/app/index.php`: what Symfony's
 * `Request::getBaseUrl()` and Laravel, built on it, match against REQUEST_URI to find the mount),
 * while REQUEST_URI and PATH_INFO stay the client's (`/app/blog/1` and `/blog/1`).
 *
 * @throws `SCGI_ERR_INVALID_OPTION` for a relative `root` or a `script` that is not a plain path
 */
export function phpFrontController(options: PhpFrontControllerOptions): ParamsFunction {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('phpFrontController', 'must be an object');
  }
  const { root, script = '/index.php' } = options;
  if (typeof root !== 'string' || !root.startsWith('/') || root.includes('\0')) {
    throw new InvalidOptionError('phpFrontController.root', 'must be an absolute path');
  }
  if (
    typeof script !== 'string' ||
    !script.startsWith('/') ||
    script.includes('\0') ||
    script.split('/').some((segment) => segment === '..' || segment === '.')
  ) {
    throw new InvalidOptionError(
      'phpFrontController.script',
      'must be a path starting with "/", without "." or ".." segments',
    );
  }
  const base = root.endsWith('/') && root.length > 1 ? root.slice(0, -1) : root;
  const fixed: EnvPair[] = [
    ['SCRIPT_FILENAME', base === '/' ? script : base + script],
    ['DOCUMENT_ROOT', base],
  ];
  // Mounts are few: one frozen list per mount.
  const byMount = new Map<string, readonly EnvPair[]>();
  return (_req, context: ParamsContext) => {
    let pairs = byMount.get(context.scriptName);
    if (pairs === undefined) {
      pairs = Object.freeze([...fixed, ['SCRIPT_NAME', context.scriptName + script]]);
      if (byMount.size >= 64) byMount.clear();
      byMount.set(context.scriptName, pairs);
    }
    return pairs;
  };
}
