// What a request would sign, in words a person reads. Pure functions of the intent the server
// decoded (GET /v1/requests/{id} `intent`): no network, no DOM. Each describe() answers
// { title, summary, warnings: [string], sections: [{ heading, rows: [[label, value]] }] },
// where a value is a string, { mono: string } (hex, addresses) or { tree: any } (JSON shown
// as a nested list).

const CHAINS = {
  1: 'Ethereum Mainnet', 5: 'Goerli', 10: 'OP Mainnet', 56: 'BNB Smart Chain', 100: 'Gnosis',
  137: 'Polygon', 8453: 'Base', 17000: 'Holesky', 42161: 'Arbitrum One', 43114: 'Avalanche C-Chain',
  59144: 'Linea', 11155111: 'Sepolia', 31337: 'Local development chain',
};

// Tokens whose units are known: chain id -> lower-case contract -> symbol and decimals.
const TOKENS = {
  1: {
    '0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48': { symbol: 'USDC', decimals: 6 },
    '0xdac17f958d2ee523a2206206994597c13d831ec7': { symbol: 'USDT', decimals: 6 },
    '0x6b175474e89094c44da98b954eedeac495271d0f': { symbol: 'DAI', decimals: 18 },
    '0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2': { symbol: 'WETH', decimals: 18 },
  },
  11155111: {
    '0x1c7d4b196cb0c7b01d743fbc6116a902379c7238': { symbol: 'USDC', decimals: 6 },
  },
};

/** The decimal integer string `amount` divided by 10^decimals, exactly, without trailing zeros. */
export function formatUnits(amount, decimals) {
  const text = String(amount);
  if (!/^[0-9]+$/.test(text)) return text;
  const value = BigInt(text);
  const base = 10n ** BigInt(decimals);
  const whole = value / base;
  let frac = (value % base).toString().padStart(decimals, '0').replace(/0+$/, '');
  const grouped = whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return frac ? `${grouped}.${frac}` : grouped;
}

export function chainName(id) {
  return CHAINS[id] ? `${CHAINS[id]} (chain id ${id})` : `chain id ${id}`;
}

function mul(a, b) {
  try { return (BigInt(a) * BigInt(b)).toString(); } catch { return null; }
}

function add(a, b) {
  try { return (BigInt(a) + BigInt(b)).toString(); } catch { return null; }
}

function eth(wei) {
  return `${formatUnits(wei, 18)} ETH (${formatUnits(wei, 0)} wei)`;
}

function gwei(wei) {
  return `${formatUnits(wei, 9)} gwei`;
}

function address(addr, labels) {
  if (!addr) return '—';
  const label = labels?.get(String(addr).toLowerCase());
  return { mono: label ? `${addr} (${label})` : addr };
}

function ethereumTransaction(t, labels) {
  const rows = [
    ['Chain', chainName(t.chain_id)],
    ['From', address(t.from, labels)],
    ['To', t.to ? address(t.to, labels) : 'Contract creation (no recipient)'],
    ['Value', eth(t.value)],
    ['Nonce', String(t.nonce)],
    ['Gas limit', formatUnits(String(t.gas_limit), 0)],
  ];
  let perGas = t.max_fee_per_gas ?? t.gas_price;
  if (t.max_fee_per_gas) {
    rows.push(['Max fee per gas', gwei(t.max_fee_per_gas)]);
    rows.push(['Max priority fee', gwei(t.max_priority_fee_per_gas ?? '0')]);
  } else if (t.gas_price) {
    rows.push(['Gas price', gwei(t.gas_price)]);
  }
  const maxFee = perGas ? mul(t.gas_limit, perGas) : null;
  if (maxFee) {
    rows.push(['Max network fee', eth(maxFee)]);
    rows.push(['Worst-case cost', eth(add(maxFee, t.value))]);
  }
  rows.push(['Type', t.tx_type]);
  const sections = [{ heading: 'Transaction', rows }];
  const warnings = [];
  let summary = `Send ${formatUnits(t.value, 18)} ETH to ${t.to ?? 'a new contract'} on ${CHAINS[t.chain_id] ?? `chain ${t.chain_id}`}`;
  if (t.erc20) {
    const token = TOKENS[t.chain_id]?.[String(t.erc20.token).toLowerCase()];
    const amount = token
      ? `${formatUnits(t.erc20.amount, token.decimals)} ${token.symbol}`
      : `${formatUnits(t.erc20.amount, 0)} (smallest units of an unknown token)`;
    const fn = t.erc20.function;
    const erc = [
      ['Function', fn],
      ['Token', address(t.erc20.token, labels)],
    ];
    if (t.erc20.owner) erc.push(['From (owner)', address(t.erc20.owner, labels)]);
    erc.push([fn === 'approve' ? 'Spender' : 'Recipient', address(t.erc20.to, labels)]);
    erc.push(['Amount', amount]);
    sections.push({ heading: 'Token call (ERC-20)', rows: erc });
    summary = fn === 'approve'
      ? `Allow ${t.erc20.to} to spend ${amount}`
      : `Transfer ${amount} to ${t.erc20.to}`;
    if (fn === 'approve' && /^f{64}$/i.test(BigInt(t.erc20.amount).toString(16))) {
      warnings.push('Unlimited approval: the spender may take every token of this kind, now and later.');
    }
  } else if (t.data && t.data !== '0x') {
    sections.push({
      heading: 'Call data',
      rows: [['Selector', { mono: t.selector ?? '—' }], ['Data', { mono: t.data }]],
    });
    warnings.push('This transaction calls a contract with data Keyward does not decode.');
  }
  return { title: 'Ethereum transaction', summary, warnings, sections };
}

function ethereumMessage(m) {
  const rows = [['Signer', address(m.from)], ['Length', `${m.length} bytes`]];
  if (m.text != null) rows.push(['Text', m.text]);
  else rows.push(['Bytes (hex)', { mono: m.message }]);
  rows.push(['EIP-191 hash', { mono: m.hash }]);
  return {
    title: 'Ethereum message (EIP-191)',
    summary: m.text != null ? `Sign the text “${m.text.slice(0, 80)}”` : `Sign ${m.length} bytes`,
    warnings: m.text == null ? ['The message is not text; check the bytes.'] : [],
    sections: [{ heading: 'Message', rows }],
  };
}

function ethereumTypedData(d) {
  const domain = [];
  if (d.domain?.name != null) domain.push(['Name', d.domain.name]);
  if (d.domain?.version != null) domain.push(['Version', d.domain.version]);
  if (d.domain?.chain_id != null) domain.push(['Chain', chainName(d.domain.chain_id)]);
  if (d.domain?.verifying_contract) domain.push(['Verifying contract', address(d.domain.verifying_contract)]);
  if (d.domain?.salt) domain.push(['Salt', { mono: d.domain.salt }]);
  return {
    title: `Typed data (EIP-712): ${d.primary_type}`,
    summary: `Sign ${d.primary_type} for ${d.domain?.name ?? 'an unnamed domain'}`,
    warnings: [],
    sections: [
      { heading: 'Domain', rows: domain },
      { heading: `Message (${d.primary_type})`, rows: [['Fields', { tree: d.message }]] },
      { heading: 'Hash', rows: [['Signing hash', { mono: d.hash }], ['Signer', address(d.from)]] },
    ],
  };
}

function btc(sat) {
  return `${formatUnits(String(sat), 8)} BTC (${formatUnits(String(sat), 0)} sat)`;
}

function bitcoinPsbt(p) {
  const outputs = p.outputs.map((o, i) => [
    `Output ${i}${o.change ? ' (change)' : ''}`,
    `${o.address ?? `script ${o.script_hex}`}: ${btc(o.amount_sat)}`,
  ]);
  const inputs = p.inputs.map((input, i) => [
    `Input ${i}${input.ours ? ' (this key)' : ''}`,
    `${input.outpoint}: ${btc(input.amount_sat)}`,
  ]);
  const paid = p.outputs.filter((o) => !o.change);
  const total = paid.reduce((s, o) => s + BigInt(o.amount_sat), 0n);
  return {
    title: `Bitcoin transaction (${p.network})`,
    summary: `Pay ${formatUnits(total.toString(), 8)} BTC to ${paid.length} output(s), fee ${formatUnits(String(p.fee_sat), 8)} BTC`,
    warnings: [],
    sections: [
      { heading: 'Outputs', rows: outputs },
      {
        heading: 'Network fee',
        rows: [
          ['Fee', btc(p.fee_sat)],
          ['Fee rate', `${(p.fee_rate_sat_per_kvb / 1000).toFixed(3).replace(/\.?0+$/, '')} sat/vB`],
          ['Size', `${p.vsize} vbytes`],
        ],
      },
      { heading: 'Inputs', rows: inputs },
      { heading: 'Transaction', rows: [['Txid', { mono: p.txid }], ['Network', p.network]] },
    ],
  };
}

function sol(lamports) {
  return `${formatUnits(String(lamports), 9)} SOL (${formatUnits(String(lamports), 0)} lamports)`;
}

function solanaTransaction(t) {
  const transfers = t.system_transfers.map((x, i) => [
    `Transfer ${i + 1}`, `${sol(x.lamports)} from ${x.from} to ${x.to}`,
  ]);
  const tokens = t.token_transfers.map((x, i) => [
    `Token transfer ${i + 1}`,
    `${x.decimals != null ? formatUnits(String(x.amount), x.decimals) : `${x.amount} base units`}${x.mint ? ` of mint ${x.mint}` : ''} from ${x.source} to ${x.destination}`,
  ]);
  const total = t.system_transfers.reduce((s, x) => s + BigInt(x.lamports), 0n);
  return {
    title: 'Solana transaction',
    summary: `${t.system_transfers.length} SOL transfer(s) totalling ${formatUnits(total.toString(), 9)} SOL, ${t.token_transfers.length} token transfer(s)`,
    warnings: [],
    sections: [
      { heading: 'Transfers', rows: [...transfers, ...tokens] },
      {
        heading: 'Transaction',
        rows: [
          ['Fee payer', { mono: t.fee_payer }],
          ['Programs', t.program_ids.join(', ')],
          ['Instructions', String(t.instruction_count)],
          ['Signers', t.signers.join(', ')],
          ['Version', t.version],
          ['Recent blockhash', { mono: t.recent_blockhash }],
        ],
      },
    ],
  };
}

function solanaMessage(m) {
  return {
    title: 'Solana off-chain message',
    summary: `Sign the text “${String(m.text).slice(0, 80)}”`,
    warnings: [],
    sections: [{ heading: 'Message', rows: [['Text', m.text], ['Format', m.format], ['Length', `${m.message_len} bytes`]] }],
  };
}

function documentIntent(d) {
  const rows = [
    ['Document', d.document_name ?? '(no name given)'],
    ['Hash', { mono: `${d.hash_algorithm}:${d.hash}` }],
  ];
  if (d.document_len != null) rows.push(['Size', `${formatUnits(String(d.document_len), 0)} bytes`]);
  rows.push(['Signer certificate', d.certificate_subject ?? '(none)']);
  if (d.certificate_serial) rows.push(['Certificate serial', { mono: d.certificate_serial }]);
  rows.push(['Format', d.format === 'cms' ? 'CMS detached signature' : 'bare signature over the hash']);
  rows.push(['Level', d.format === 'cms' ? 'B-B (CAdES basic)' : 'none (raw)']);
  if (d.signing_time) rows.push(['Signing time', d.signing_time]);
  return {
    title: 'Document signature',
    summary: `Sign ${d.document_name ?? 'a document'} as ${d.certificate_subject ?? 'the key'}`,
    warnings: [],
    sections: [{ heading: 'The document', rows }],
  };
}

function raw(r) {
  const rows = [['Digest', { mono: r.digest }], ['Hash', r.hash]];
  if (r.message_len != null) rows.push(['Message length', `${r.message_len} bytes`]);
  return {
    title: 'Raw signature',
    summary: `Sign the ${r.hash} digest ${String(r.digest).slice(0, 16)}…`,
    warnings: r.prehashed
      ? ['Blind signature: only a digest was sent, and Keyward cannot tell what it stands for.']
      : [],
    sections: [{ heading: 'What is signed', rows }],
  };
}

/** Describes an intent; `labels` maps lower-case addresses to names (from allowlist settings). */
export function describe(intent, labels = new Map()) {
  switch (intent?.kind) {
    case 'ethereum_transaction': return ethereumTransaction(intent, labels);
    case 'ethereum_message': return ethereumMessage(intent);
    case 'ethereum_typed_data': return ethereumTypedData(intent);
    case 'bitcoin_psbt': return bitcoinPsbt(intent);
    case 'solana_transaction': return solanaTransaction(intent);
    case 'solana_message': return solanaMessage(intent);
    case 'document': return documentIntent(intent);
    case 'raw': return raw(intent);
    default:
      return {
        title: `Unknown request (${intent?.kind ?? 'no kind'})`,
        summary: 'This page cannot decode it; the JSON is below.',
        warnings: ['Unknown kind: check the JSON before you approve.'],
        sections: [{ heading: 'Intent', rows: [['JSON', { tree: intent }]] }],
      };
  }
}
