// Bundles editor.js into ../../static/vendor/codemirror/ (one minified file, committed) and
// writes the licenses of every package that went into it beside it. Run by `make editor`.
import { build } from "esbuild";
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "..", "static", "vendor", "codemirror");
mkdirSync(out, { recursive: true });

const result = await build({
  entryPoints: [join(here, "editor.js")],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  legalComments: "none", // the packages' licenses go to LICENSES.txt (below), named in the banner
  banner: { js: "/*! CodeMirror 6 and its parts, bundled for Tako VM; licenses: LICENSES.txt beside this file */" },
  metafile: true,
  outfile: join(out, "codemirror.bundle.js"),
});

// Every package with code in the bundle, with its version and license text.
const packages = new Set();
const [bundle] = Object.values(result.metafile.outputs);
for (const [input, { bytesInOutput }] of Object.entries(bundle.inputs)) {
  const match = bytesInOutput > 0 && input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (match) packages.add(match[1]);
}
const sections = [...packages].sort().map((name) => {
  const root = join(here, "node_modules", name);
  const meta = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const file = ["LICENSE", "LICENSE.md", "LICENSE.txt"].map((f) => join(root, f)).find(existsSync);
  if (!file) throw new Error(`${name} has no LICENSE file: add its notice by hand`);
  return `${name}@${meta.version} (${meta.license})\n\n${readFileSync(file, "utf8").trim()}\n`;
});
writeFileSync(join(out, "LICENSES.txt"), sections.join("\n" + "-".repeat(72) + "\n\n"));
writeFileSync(join(out, "VERSION"), [...packages].sort().map((name) => {
  const meta = JSON.parse(readFileSync(join(here, "node_modules", name, "package.json"), "utf8"));
  return `${name}@${meta.version}`;
}).join("\n") + "\n");
console.log(`bundled ${packages.size} packages into ${out}`);
