// A wallet backend's signing step with Keyward as the remote signer: ethers talks JSON-RPC to
// Keyward's /rpc/ethereum (eth_accounts, eth_signTransaction), so the private key never leaves
// Keyward and every payment passes the key's policies first.
//
//   npm install                                   # once, in examples/ethers-wallet
//   KEYWARD_TOKEN=... node wallet.mjs accounts
//   KEYWARD_TOKEN=... node wallet.mjs pay 0xRecipient 0.01 [--chain 11155111] [--nonce 0]
//
// `pay` prints the signed raw transaction and what it says (parsed back by ethers); send it
// with any node's eth_sendRawTransaction. KEYWARD_URL defaults to http://127.0.0.1:8080.
// A policy refusal exits with status 1 and Keyward's reason.
import { ethers } from 'ethers';

const url = (process.env.KEYWARD_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
const token = process.env.KEYWARD_TOKEN;
if (!token) {
  console.error('set KEYWARD_TOKEN to a Keyward access token (role signer)');
  process.exit(2);
}
const [command, ...rest] = process.argv.slice(2);
const option = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
const chainId = BigInt(option('chain', '11155111'));

const request = new ethers.FetchRequest(`${url}/rpc/ethereum`);
request.setHeader('Authorization', `Bearer ${token}`);
const provider = new ethers.JsonRpcProvider(request, chainId, { staticNetwork: true, batchMaxCount: 1 });

try {
  const accounts = (await provider.listAccounts()).map((s) => s.address);
  if (command === 'accounts') {
    console.log(JSON.stringify({ accounts }));
  } else if (command === 'pay') {
    const [to, eth] = rest;
    if (!ethers.isAddress(to) || !eth) throw new Error('usage: pay 0xRecipient AMOUNT_ETH');
    const from = option('from', accounts[0]);
    if (!from) throw new Error('this token may sign with no Ethereum account');
    const signer = await provider.getSigner(from);
    const raw = await signer.signTransaction({
      type: 2,
      chainId,
      nonce: Number(option('nonce', '0')),
      to,
      value: ethers.parseEther(eth),
      gasLimit: 21000n,
      maxFeePerGas: ethers.parseUnits(option('max-fee-gwei', '30'), 'gwei'),
      maxPriorityFeePerGas: ethers.parseUnits(option('tip-gwei', '1'), 'gwei'),
    });
    const tx = ethers.Transaction.from(raw);
    console.log(JSON.stringify({
      raw,
      hash: tx.hash,
      from: tx.from,
      to: tx.to,
      value_wei: tx.value.toString(),
      chain_id: tx.chainId.toString(),
    }));
  } else {
    throw new Error('commands: accounts | pay 0xRecipient AMOUNT_ETH');
  }
} catch (e) {
  console.error(`keyward: ${e.error?.message ?? e.shortMessage ?? e.message}`);
  process.exitCode = 1;
} finally {
  provider.destroy();
}
