// Runs the approvers' page's decoder (server/ui/decode.js) on intents and prints, for each,
// its title, summary, warnings and every row as "label: value" text, as the page shows them.
//
// Usage: node ui-decode-check.mjs run INPUT.json, INPUT.json being {"intents": [...]}.
import { readFileSync } from 'node:fs';
import { describe } from '../../server/ui/decode.js';

const text = (v) => {
  if (v && typeof v === 'object' && 'mono' in v) return v.mono;
  if (v && typeof v === 'object' && 'tree' in v) return JSON.stringify(v.tree);
  return String(v);
};
const { intents } = JSON.parse(readFileSync(process.argv[3], 'utf8'));
const out = intents.map((intent) => {
  const d = describe(intent);
  return {
    title: d.title,
    summary: d.summary,
    warnings: d.warnings,
    rows: d.sections.flatMap((s) => s.rows.map(([k, v]) => `${k}: ${text(v)}`)),
  };
});
process.stdout.write(`${JSON.stringify(out)}\n`);
