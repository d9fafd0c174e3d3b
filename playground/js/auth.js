// Getting a token without the page ever holding a server secret: from the URL scripts/run.sh prints
// (?token=..., then removed from the address bar), pasted by the user, or minted with the API key the
// operator types (POST /integrations/playground; the key stays in this module's memory, never stored).

const STORE = "voi-playground-token"; // the token only (valid hours), per tab

export function tokenFromPage() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
    sessionStorage.setItem(STORE, fromUrl);
    return fromUrl;
  }
  return sessionStorage.getItem(STORE);
}

export function rememberToken(token) {
  sessionStorage.setItem(STORE, token);
}

export function forgetToken() {
  sessionStorage.removeItem(STORE);
}

export class AuthError extends Error {}

async function detail(response) {
  try { return (await response.json()).detail || response.statusText; } catch { return response.statusText; }
}

export async function tokenFromApiKey(apiKey) {
  const response = await fetch("/integrations/playground", { method: "POST", headers: { "API-Key": apiKey } });
  if (!response.ok) throw new AuthError(`the API key was not accepted (${await detail(response)})`);
  return (await response.json()).token;
}

// The server's agents; AuthError when the token is bad or expired.
export async function listAgents(token) {
  const response = await fetch("/agents", { headers: { Authorization: `Bearer ${token}` } });
  if (response.status === 401) throw new AuthError(await detail(response));
  if (!response.ok) throw new Error(`GET /agents failed: ${response.status}`);
  return (await response.json()).agents;
}
