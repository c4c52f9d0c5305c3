// Builds every screen (src/<screen>/main.js) into dist/: minified ES modules with shared
// chunks, one CSS file per screen, and dist/manifest.json naming each screen's files.
// The manifest records a hash of the sources so a test (in Python, no node needed) can
// tell when the committed build no longer matches them. Run: npm run build.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));
const src = join(root, 'src');
const dist = join(root, 'dist');

// Everything the build reads, in a fixed order: web/tests/test_build mirrors this.
function sourceFiles() {
  const found = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else found.push(path);
    }
  };
  walk(src);
  found.push(join(root, 'build.mjs'), join(root, 'package-lock.json'));
  return found.map((path) => relative(root, path).split(sep).join('/')).sort();
}

export function sourceHash() {
  const hash = createHash('sha256');
  for (const path of sourceFiles()) {
    hash.update(path + '\0');
    hash.update(readFileSync(join(root, path)));
    hash.update('\0');
  }
  return hash.digest('hex');
}

// --check: exit 0 when dist/ was built from the sources as they are, 1 otherwise (needs no
// node_modules, so scripts/install can decide whether to rebuild).
if (process.argv.includes('--check')) {
  let built = null;
  try {
    built = JSON.parse(readFileSync(join(dist, 'manifest.json'), 'utf8')).source_hash;
  } catch {
    built = null;
  }
  process.exit(built === sourceHash() ? 0 : 1);
}

const esbuild = await import('esbuild');
const screens = readdirSync(src).filter((name) => name !== 'shared' && statSync(join(src, name, 'main.js'), { throwIfNoEntry: false }));

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
// Paths in the metafile are relative to the working directory: pin it to web/ so that a
// build started from anywhere names the same files.
const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: Object.fromEntries(screens.map((screen) => [screen, join(src, screen, 'main.js')])),
  outdir: join(dist, 'assets'),
  entryNames: '[name]-[hash]',
  chunkNames: 'chunk-[hash]',
  assetNames: '[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  minify: true,
  target: ['chrome110', 'safari16', 'firefox110'],
  loader: { '.png': 'file', '.svg': 'file' },
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
});

const manifest = { source_hash: sourceHash(), esbuild: esbuild.version, screens: {} };
for (const [path, output] of Object.entries(result.metafile.outputs)) {
  if (!output.entryPoint) continue;
  const screen = output.entryPoint.split('/').at(-2);
  manifest.screens[screen] = {
    js: relative(dist, join(root, path)).split(sep).join('/'),
    css: output.cssBundle ? relative(dist, join(root, output.cssBundle)).split(sep).join('/') : null,
  };
}
// The app's service worker and web-app manifest keep fixed names: the browser finds them by
// URL (/app/sw.js, /app/manifest.webmanifest, /app/icon.svg), not through a page's imports.
await esbuild.build({
  entryPoints: [join(src, 'app', 'sw.js')],
  outfile: join(dist, 'app', 'sw.js'),
  bundle: true,
  format: 'iife',
  minify: true,
  target: ['chrome110', 'safari16', 'firefox110'],
  logLevel: 'warning',
});
for (const name of ['manifest.webmanifest', 'icon.svg']) writeFileSync(join(dist, 'app', name), readFileSync(join(src, 'app', name)));
manifest.files = { app: ['sw.js', 'manifest.webmanifest', 'icon.svg'] };

writeFileSync(join(dist, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
console.log(`built ${screens.join(', ')} into dist/ (sources ${manifest.source_hash.slice(0, 12)})`);
