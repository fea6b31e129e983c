//! llama.cpp's RPC backend (ggml-rpc): serving this machine's CPU to other machines, and
//! offloading a model's blocks to such servers.
//!
//! The client builds every graph and ships tensors and graphs to the servers, so the skip
//! hook (which acts while the graph is built) works unchanged.
//!
//! ggml-rpc aborts the process on any failure (an endpoint that does not parse, a refused
//! connection, a wrong protocol, a server that dies mid-call). So every endpoint is parsed,
//! connected to and greeted here first, with timeouts; and while servers are in use a ggml
//! abort hook turns a lost server into one clear error line and exit status 1 instead of a
//! core dump. The protocol has no authentication: servers bind to loopback by default.

use std::ffi::{CStr, CString, c_char};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use llama_cpp_sys_2 as sys;

use super::error::{EngineError, Result};

/// The RPC protocol version this llama.cpp speaks (ggml-rpc.h): servers must match it.
const PROTO_MAJOR: u8 = 7;
const PROTO_MINOR: u8 = 0;
/// ggml-rpc's command number of the greeting, and the size of its capability field.
const CMD_HELLO: u8 = 14;
const CAPS_SIZE: usize = 24;
/// How long connecting to and greeting a server may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One RPC server as the model sees it.
#[derive(Debug, Clone)]
pub struct RpcDevice {
    /// `host:port` as given.
    pub endpoint: String,
    /// ggml's device name (`RPC0`, ...).
    pub name: String,
    /// Memory the server reports free, in bytes.
    pub free: usize,
    ptr: DevicePtr,
}

#[derive(Debug, Clone, Copy)]
struct DevicePtr(sys::ggml_backend_dev_t);
// SAFETY: ggml device handles are process-wide, immutable descriptors.
unsafe impl Send for DevicePtr {}
// SAFETY: as above.
unsafe impl Sync for DevicePtr {}

/// Endpoints registered with ggml in this process (ggml would add a second set of devices
/// for an endpoint registered twice).
static REGISTERED: Mutex<Vec<RpcDevice>> = Mutex::new(Vec::new());

/// Checks that `endpoint` is `HOST:PORT` with a port in 1..=65535, and resolves it.
pub fn parse_endpoint(endpoint: &str) -> Result<SocketAddr> {
    let bad = |why: &str| EngineError::Rpc(format!("`{endpoint}` is not HOST:PORT ({why})"));
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?;
    (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|e| EngineError::Rpc(format!("cannot resolve `{host}`: {e}")))?
        .next()
        .ok_or_else(|| EngineError::Rpc(format!("`{host}` resolves to no address")))
}

/// Connects to `endpoint` and exchanges ggml-rpc's greeting, with timeouts, so that an
/// unreachable server or another program on that port is an error and not an abort or a
/// hang inside ggml.
pub fn probe(endpoint: &str) -> Result<()> {
    let addr = parse_endpoint(endpoint)?;
    let fail = |what: String| {
        EngineError::Rpc(format!(
            "no uniskip/llama.cpp RPC server at {endpoint}: {what} (start one there with `uniskip rpc-server --port {}`)",
            addr.port()
        ))
    };
    let mut sock = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| fail(format!("cannot connect: {e}")))?;
    sock.set_read_timeout(Some(CONNECT_TIMEOUT))
        .and_then(|()| sock.set_write_timeout(Some(CONNECT_TIMEOUT)))
        .map_err(|e| fail(e.to_string()))?;
    // | command (1 byte) | request size (8 bytes, little-endian) | request |
    let mut hello = vec![CMD_HELLO];
    hello.extend_from_slice(&(CAPS_SIZE as u64).to_le_bytes());
    hello.extend_from_slice(&[0u8; CAPS_SIZE]);
    sock.write_all(&hello)
        .map_err(|e| fail(format!("greeting not sent: {e}")))?;
    // | response size (8 bytes) | major, minor, patch, padding, capabilities |
    let mut size = [0u8; 8];
    sock.read_exact(&mut size)
        .map_err(|e| fail(format!("no greeting back: {e}")))?;
    if u64::from_le_bytes(size) != 4 + CAPS_SIZE as u64 {
        return Err(fail("it answered, but not in the RPC protocol".into()));
    }
    let mut rsp = [0u8; 4 + CAPS_SIZE];
    sock.read_exact(&mut rsp)
        .map_err(|e| fail(format!("greeting cut short: {e}")))?;
    if rsp[0] != PROTO_MAJOR || rsp[1] > PROTO_MINOR {
        return Err(EngineError::Rpc(format!(
            "the RPC server at {endpoint} speaks protocol {}.{}.{}, this uniskip {PROTO_MAJOR}.{PROTO_MINOR}: run the same uniskip on both ends",
            rsp[0], rsp[1], rsp[2]
        )));
    }
    Ok(())
}

/// The RPC backend's registry entry (built in, or loaded as a module).
fn rpc_reg() -> Result<sys::ggml_backend_reg_t> {
    super::model::ensure_backend()?;
    // SAFETY: a NUL-terminated name; ggml returns null when no such backend exists.
    let reg = unsafe { sys::ggml_backend_reg_by_name(c"RPC".as_ptr()) };
    if reg.is_null() {
        return Err(EngineError::Rpc(
            "this build of llama.cpp has no RPC backend (GGML_RPC)".into(),
        ));
    }
    Ok(reg)
}

/// Looks up one of the RPC backend's exported functions.
fn rpc_fn(name: &CStr) -> Result<*mut std::ffi::c_void> {
    let reg = rpc_reg()?;
    // SAFETY: a live registry and a NUL-terminated name; null when absent.
    let f = unsafe { sys::ggml_backend_reg_get_proc_address(reg, name.as_ptr()) };
    if f.is_null() {
        return Err(EngineError::Rpc(format!(
            "the RPC backend lacks {}",
            name.to_string_lossy()
        )));
    }
    Ok(f)
}

/// Probes each endpoint, registers its devices with ggml (once per process), and returns
/// them in the order given. Installs the lost-server hook.
pub fn connect(endpoints: &[String]) -> Result<Vec<RpcDevice>> {
    type AddServer = unsafe extern "C" fn(*const c_char) -> sys::ggml_backend_reg_t;
    let mut registered = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    for endpoint in endpoints {
        if let Some(dev) = registered.iter().find(|d| &d.endpoint == endpoint) {
            out.push(dev.clone());
            continue;
        }
        probe(endpoint)?;
        install_lost_server_hook();
        let add: AddServer = unsafe {
            // SAFETY: ggml-rpc exports this function with exactly this signature.
            std::mem::transmute::<*mut std::ffi::c_void, AddServer>(rpc_fn(
                c"ggml_backend_rpc_add_server",
            )?)
        };
        let c_endpoint = CString::new(endpoint.as_str())
            .map_err(|_| EngineError::Rpc(format!("`{endpoint}` holds a NUL byte")))?;
        // SAFETY: the server answered the greeting just now, so ggml's own connection
        // succeeds; a server that vanishes in between is caught by the abort hook.
        let reg = unsafe { add(c_endpoint.as_ptr()) };
        if reg.is_null() {
            return Err(EngineError::Rpc(format!(
                "the RPC server at {endpoint} offers no device"
            )));
        }
        // SAFETY: a registry ggml-rpc just created; registering makes its devices visible
        // to llama.cpp's device list.
        unsafe { sys::ggml_backend_register(reg) };
        // SAFETY: `reg` is live; indices are below its device count.
        let n = unsafe { sys::ggml_backend_reg_dev_count(reg) };
        for i in 0..n {
            let dev = unsafe { sys::ggml_backend_reg_dev_get(reg, i) };
            let (mut free, mut total) = (0usize, 0usize);
            // SAFETY: a live device and two out-parameters.
            unsafe { sys::ggml_backend_dev_memory(dev, &mut free, &mut total) };
            // SAFETY: ggml returns a NUL-terminated name owned by the device.
            let name = unsafe { CStr::from_ptr(sys::ggml_backend_dev_name(dev)) }
                .to_string_lossy()
                .into_owned();
            let device = RpcDevice {
                endpoint: endpoint.clone(),
                name,
                free,
                ptr: DevicePtr(dev),
            };
            registered.push(device.clone());
            out.push(device);
        }
    }
    Ok(out)
}

/// Indices of `devices` in ggml's global device list (what llama.cpp's model parameters
/// select devices by).
pub(crate) fn device_indices(devices: &[RpcDevice]) -> Vec<usize> {
    // SAFETY: plain queries of ggml's device list.
    let count = unsafe { sys::ggml_backend_dev_count() };
    devices
        .iter()
        .filter_map(|d| (0..count).find(|&i| unsafe { sys::ggml_backend_dev_get(i) } == d.ptr.0))
        .collect()
}

/// Which device holds each block and the output head when all blocks are offloaded to
/// `devices`: llama.cpp splits the `n_layer + 1` offloadable layers in proportion to each
/// device's free memory, in order (see `llama_model::load_tensors`).
pub fn split(devices: &[RpcDevice], n_layer: usize) -> Vec<usize> {
    let total: f64 = devices.iter().map(|d| d.free as f64).sum();
    let mut cumulative = Vec::with_capacity(devices.len());
    let mut acc = 0.0;
    for d in devices {
        acc += if total > 0.0 { d.free as f64 } else { 1.0 };
        cumulative.push(acc);
    }
    let sum = acc.max(f64::MIN_POSITIVE);
    let cumulative: Vec<f32> = cumulative.iter().map(|c| (c / sum) as f32).collect();
    let layers = n_layer + 1;
    (0..layers)
        .map(|il| {
            let x = il as f32 / layers as f32;
            cumulative
                .iter()
                .position(|&c| c > x)
                .unwrap_or(devices.len() - 1)
        })
        .collect()
}

/// One line per server: which blocks it holds (the last also holds the output head).
pub fn describe_split(devices: &[RpcDevice], n_layer: usize) -> Vec<String> {
    let owner = split(devices, n_layer);
    devices
        .iter()
        .enumerate()
        .map(|(d, dev)| {
            let blocks: Vec<usize> = (0..n_layer).filter(|&il| owner[il] == d).collect();
            let range = match (blocks.first(), blocks.last()) {
                (Some(a), Some(b)) if a == b => format!("block {a}"),
                (Some(a), Some(b)) => format!("blocks {a}-{b}"),
                _ => "no blocks".to_string(),
            };
            let head = if owner[n_layer] == d {
                " + output head"
            } else {
                ""
            };
            format!("{} ({}): {range}{head}", dev.endpoint, dev.name)
        })
        .collect()
}

/// Serves this machine's CPU to RPC clients at `endpoint` (`host:port`) until the process
/// ends. Returns only when the server could not start (e.g. the port is taken).
pub fn serve(endpoint: &str, cache_dir: Option<&Path>, threads: usize) -> Result<()> {
    type StartServer = unsafe extern "C" fn(
        *const c_char,
        *const c_char,
        usize,
        usize,
        *mut sys::ggml_backend_dev_t,
    );
    parse_endpoint(endpoint)?;
    // Bind-test first: ggml only says "Failed to create server socket" on stderr.
    let listener = std::net::TcpListener::bind(parse_endpoint(endpoint)?).map_err(|e| {
        EngineError::Rpc(format!(
            "cannot listen on {endpoint}: {e} (is another server on that port?)"
        ))
    })?;
    drop(listener);
    let start: StartServer = unsafe {
        // SAFETY: ggml-rpc exports this function with exactly this signature (ggml-rpc.h).
        std::mem::transmute::<*mut std::ffi::c_void, StartServer>(rpc_fn(
            c"ggml_backend_rpc_start_server",
        )?)
    };
    // SAFETY: a query of ggml's device list; null when there is no CPU device.
    let mut cpu = unsafe { sys::ggml_backend_dev_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU) };
    if cpu.is_null() {
        return Err(EngineError::Backend("no CPU device to serve".into()));
    }
    let c_endpoint = CString::new(endpoint)
        .map_err(|_| EngineError::Rpc(format!("`{endpoint}` holds a NUL byte")))?;
    let c_cache = match cache_dir {
        Some(dir) => Some(
            CString::new(dir.to_string_lossy().as_bytes())
                .map_err(|_| EngineError::Rpc("the cache path holds a NUL byte".into()))?,
        ),
        None => None,
    };
    // SAFETY: valid C strings (or null for no cache) and one live device; the call runs
    // the accept loop and returns only when it cannot listen or accept.
    unsafe {
        start(
            c_endpoint.as_ptr(),
            c_cache.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            threads,
            1,
            &mut cpu,
        )
    };
    Err(EngineError::Rpc(format!(
        "the RPC server on {endpoint} stopped (it could not listen or accept)"
    )))
}

/// Called (before it exits) when a server is lost mid-run, e.g. to give the terminal back.
static LAST_WORDS: Mutex<Option<fn()>> = Mutex::new(None);

/// Registers what to do, before exiting, when an RPC server is lost mid-run.
pub fn on_server_lost(f: fn()) {
    *LAST_WORDS.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
}

/// Replaces ggml's abort (a core dump, with the client hanging on to nothing) by one
/// error line and exit status 1, for as long as RPC servers may be in use.
fn install_lost_server_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sets a process-wide function pointer; the hook never returns.
        let hook: unsafe extern "C" fn(*const c_char) = lost_server;
        unsafe { sys::ggml_set_abort_callback(Some(hook)) };
    });
}

extern "C" fn lost_server(message: *const c_char) {
    let message = if message.is_null() {
        String::new()
    } else {
        // SAFETY: ggml passes a NUL-terminated message.
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .trim()
            .to_string()
    };
    // Neither stdout nor stderr through Rust's locks: the thread blocked in llama.cpp may
    // hold them (`run` keeps stdout locked while it streams, flushing every piece).
    if let Ok(guard) = LAST_WORDS.try_lock()
        && let Some(f) = *guard
    {
        f();
    }
    let servers: Vec<String> = REGISTERED
        .try_lock()
        .map(|r| r.iter().map(|d| d.endpoint.clone()).collect())
        .unwrap_or_default();
    let line = if message.contains("RPC") {
        format!(
            "\nerror: lost the connection to an RPC server ({}): {message}; the output so far is kept. Check that every `uniskip rpc-server` is still running\n",
            servers.join(", ")
        )
    } else {
        format!("\nerror: llama.cpp stopped: {message}\n")
    };
    // SAFETY: writes a live buffer to the standard error descriptor.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
    // Not exit(): C++ static destructors would run while other threads still use them.
    // SAFETY: ends the process at once with status 1.
    unsafe { libc::_exit(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(endpoint: &str, free: usize) -> RpcDevice {
        RpcDevice {
            endpoint: endpoint.into(),
            name: "RPC".into(),
            free,
            ptr: DevicePtr(std::ptr::null_mut()),
        }
    }

    #[test]
    fn equal_servers_split_the_blocks_in_halves_and_the_last_holds_the_head() {
        let devs = [device("a:1", 100), device("b:1", 100)];
        let owner = split(&devs, 30);
        assert_eq!(owner.len(), 31, "30 blocks and the output head");
        assert!(owner[..15].iter().all(|&d| d == 0), "{owner:?}");
        assert!(owner[16..].iter().all(|&d| d == 1), "{owner:?}");
        let lines = describe_split(&devs, 30);
        assert!(lines[0].starts_with("a:1 (RPC): blocks 0-"), "{lines:?}");
        assert!(lines[1].ends_with("-29 + output head"), "{lines:?}");
    }

    #[test]
    fn a_server_with_three_times_the_memory_gets_three_times_the_blocks() {
        let devs = [device("a:1", 100), device("b:1", 300)];
        let owner = split(&devs, 39);
        let on_a = owner.iter().filter(|&&d| d == 0).count();
        assert_eq!(on_a, 10, "a quarter of 40 layers: {owner:?}");
    }

    #[test]
    fn endpoints_need_a_host_and_a_port_in_range() {
        assert!(parse_endpoint("127.0.0.1:50052").is_ok());
        assert!(parse_endpoint("[::1]:50052").is_ok());
        for bad in [
            "127.0.0.1",
            ":50052",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:x",
        ] {
            let err = parse_endpoint(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn something_that_is_not_an_rpc_server_is_refused_not_waited_on() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            let mut buf = [0u8; 33];
            sock.read_exact(&mut buf).unwrap();
            assert_eq!(buf[0], CMD_HELLO, "the greeting starts with HELLO");
            sock.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
        });
        let err = probe(&format!("127.0.0.1:{port}")).unwrap_err().to_string();
        assert!(err.contains("not in the RPC protocol"), "{err}");
        peer.join().unwrap();
    }
}
