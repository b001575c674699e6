// hacli's load-balancer script for pfSense, run as `php` with this script
// on stdin over SSH. The request ($hacli_request, decoded from base64 JSON
// in the line above) names one operation. It changes exactly the item the
// operation names (one pool, one server, one frontend, one virtual IP or
// one DNS host override) and leaves every other item of config.xml as it
// was. HAProxy changes are validated and applied by the package's own
// haproxy_check_and_run() BEFORE write_config(), so a configuration that
// `haproxy -c` rejects is never written. The answer is one line of JSON
// after the marker @@hacli@@ (pfSense's includes may print before it).

ini_set("display_errors", "stderr");
require_once("config.inc");

function hacli_out($result) {
	echo "\n@@hacli@@" . json_encode($result) . "\n";
	exit(0);
}

function hacli_fail($code, $message) {
	hacli_out(array("ok" => false, "code" => $code, "error" => $message));
}

// pfSense parses an empty list tag as "" and a missing one as unset.
function hacli_list($v) {
	return is_array($v) ? array_values($v) : array();
}

function &hacli_haproxy() {
	global $config;
	if (!is_array($config['installedpackages'])) {
		$config['installedpackages'] = array();
	}
	if (!is_array($config['installedpackages']['haproxy'])) {
		$config['installedpackages']['haproxy'] = array();
	}
	$h = &$config['installedpackages']['haproxy'];
	foreach (array('ha_pools', 'ha_backends') as $k) {
		if (!is_array($h[$k])) {
			$h[$k] = array();
		}
		$h[$k]['item'] = hacli_list($h[$k]['item']);
	}
	return $h;
}

// The HAProxy package's dirty marker ($d_haproxyconfdirty_path), computed
// as haproxy.inc does: that file, required from inside a function here,
// sets its global without $g in scope.
function hacli_dirty_path() {
	global $g;
	$run = (is_array($g) && !empty($g['varrun_path'])) ? $g['varrun_path'] : "/var/run";
	return $run . "/haproxy.conf.dirty";
}

function hacli_read() {
	global $config;
	$h = is_array($config['installedpackages']['haproxy']) ? $config['installedpackages']['haproxy'] : array();
	$pools = array();
	foreach (hacli_list($h['ha_pools']['item']) as $p) {
		$servers = array();
		foreach (hacli_list($p['ha_servers']['item']) as $s) {
			$servers[] = array(
				"name" => (string)$s['name'], "address" => (string)$s['address'],
				"port" => (string)$s['port'], "status" => (string)$s['status'],
				"checkssl" => (string)$s['checkssl'], "advanced" => (string)$s['advanced'],
			);
		}
		$pools[] = array(
			"name" => (string)$p['name'], "check_type" => (string)$p['check_type'],
			"monitor_uri" => (string)$p['monitor_uri'], "checkinter" => (string)$p['checkinter'],
			"servers" => $servers,
		);
	}
	$frontends = array();
	foreach (hacli_list($h['ha_backends']['item']) as $f) {
		$binds = array();
		foreach (hacli_list($f['a_extaddr']['item']) as $a) {
			$binds[] = array(
				"extaddr" => (string)$a['extaddr'], "extaddr_custom" => (string)$a['extaddr_custom'],
				"extaddr_port" => (string)$a['extaddr_port'],
			);
		}
		$frontends[] = array(
			"name" => (string)$f['name'], "descr" => (string)$f['descr'],
			"status" => (string)$f['status'], "type" => (string)$f['type'],
			"backend_serverpool" => (string)$f['backend_serverpool'], "binds" => $binds,
		);
	}
	$vips = array();
	foreach (hacli_list($config['virtualip']['vip']) as $v) {
		$vips[] = array(
			"mode" => (string)$v['mode'], "interface" => (string)$v['interface'],
			"subnet" => (string)$v['subnet'], "subnet_bits" => (string)$v['subnet_bits'],
			"descr" => (string)$v['descr'],
		);
	}
	$hosts = array();
	foreach (hacli_list($config['unbound']['hosts']) as $o) {
		$hosts[] = array(
			"host" => (string)$o['host'], "domain" => (string)$o['domain'],
			"ip" => (string)$o['ip'], "descr" => (string)$o['descr'],
		);
	}
	return array("pools" => $pools, "frontends" => $frontends, "vips" => $vips,
		"hosts" => $hosts, "pending" => file_exists(hacli_dirty_path()));
}

function hacli_pool_index($h, $name) {
	foreach ($h['ha_pools']['item'] as $i => $p) {
		if ($p['name'] === $name) {
			return $i;
		}
	}
	return -1;
}

// Validate and run the edited HAProxy configuration, then record it.
function hacli_commit_haproxy($desc) {
	require_once("haproxy/haproxy.inc");
	$messages = "";
	if (!haproxy_check_and_run($messages, true)) {
		hacli_fail("HAPROXY_CONFIG_INVALID", "HAProxy rejected the configuration, nothing was written: " . trim((string)$messages));
	}
	write_config($desc);
	@unlink(hacli_dirty_path());
	hacli_out(array("ok" => true, "changed" => true));
}

function hacli_stat() {
	$sock = @stream_socket_client("unix:///tmp/haproxy.socket", $errno, $errstr, 5);
	if (!$sock) {
		hacli_fail("RUNTIME_API", "/tmp/haproxy.socket: $errstr");
	}
	stream_set_timeout($sock, 5);
	fwrite($sock, "show stat\n");
	$out = stream_get_contents($sock);
	fclose($sock);
	hacli_out(array("ok" => true, "stat" => $out));
}

$req = $hacli_request;
$op = $req['op'];
$desc = "hacli: " . $req['description'];
if ($op === 'read') {
	hacli_out(array("ok" => true, "config" => hacli_read()));
}
if ($op === 'stat') {
	hacli_stat();
}
if ($op === 'apply-haproxy') {
	// Apply what is pending (a crash between a write and its apply).
	hacli_commit_haproxy($desc);
}

if (in_array($op, array('add-pool', 'delete-pool', 'add-server', 'remove-server', 'add-frontend', 'delete-frontend'))) {
	$h = &hacli_haproxy();
}
switch ($op) {
case 'add-pool':
	if (hacli_pool_index($h, $req['pool']['name']) >= 0) {
		hacli_fail("EXISTS", "pool " . $req['pool']['name'] . " already exists");
	}
	$h['ha_pools']['item'][] = $req['pool'];
	hacli_commit_haproxy($desc);
case 'delete-pool':
	$i = hacli_pool_index($h, $req['pool']);
	if ($i < 0) {
		hacli_out(array("ok" => true, "changed" => false));
	}
	foreach ($h['ha_backends']['item'] as $f) {
		if ($f['backend_serverpool'] === $req['pool']) {
			hacli_fail("REFERENCED", "pool " . $req['pool'] . " is still used by frontend " . $f['name']);
		}
	}
	array_splice($h['ha_pools']['item'], $i, 1);
	hacli_commit_haproxy($desc);
case 'add-server':
	$i = hacli_pool_index($h, $req['pool']);
	if ($i < 0) {
		hacli_fail("NOT_FOUND", "no pool named " . $req['pool']);
	}
	$pool = &$h['ha_pools']['item'][$i];
	if (!is_array($pool['ha_servers'])) {
		$pool['ha_servers'] = array();
	}
	$pool['ha_servers']['item'] = hacli_list($pool['ha_servers']['item']);
	foreach ($pool['ha_servers']['item'] as $s) {
		if ($s['name'] === $req['server']['name']) {
			hacli_fail("EXISTS", "pool " . $req['pool'] . " already has a server named " . $s['name'] . " (" . $s['address'] . ":" . $s['port'] . ")");
		}
	}
	$pool['ha_servers']['item'][] = $req['server'];
	hacli_commit_haproxy($desc);
case 'remove-server':
	$i = hacli_pool_index($h, $req['pool']);
	if ($i < 0) {
		hacli_fail("NOT_FOUND", "no pool named " . $req['pool']);
	}
	$pool = &$h['ha_pools']['item'][$i];
	$pool['ha_servers']['item'] = hacli_list($pool['ha_servers']['item']);
	foreach ($pool['ha_servers']['item'] as $j => $s) {
		if ($s['name'] === $req['server']) {
			array_splice($pool['ha_servers']['item'], $j, 1);
			hacli_commit_haproxy($desc);
		}
	}
	hacli_out(array("ok" => true, "changed" => false));
case 'add-frontend':
	foreach ($h['ha_backends']['item'] as $f) {
		if ($f['name'] === $req['frontend']['name']) {
			hacli_fail("EXISTS", "a frontend named " . $f['name'] . " already exists");
		}
	}
	if (hacli_pool_index($h, $req['frontend']['backend_serverpool']) < 0) {
		hacli_fail("NOT_FOUND", "no pool named " . $req['frontend']['backend_serverpool']);
	}
	$h['ha_backends']['item'][] = $req['frontend'];
	hacli_commit_haproxy($desc);
case 'delete-frontend':
	foreach ($h['ha_backends']['item'] as $i => $f) {
		if ($f['name'] === $req['frontend']) {
			array_splice($h['ha_backends']['item'], $i, 1);
			hacli_commit_haproxy($desc);
		}
	}
	hacli_out(array("ok" => true, "changed" => false));
case 'add-vip':
	require_once("interfaces.inc");
	require_once("filter.inc");
	if (!is_array($config['virtualip'])) {
		$config['virtualip'] = array();
	}
	$config['virtualip']['vip'] = hacli_list($config['virtualip']['vip']);
	foreach ($config['virtualip']['vip'] as $v) {
		if ($v['subnet'] === $req['vip']['subnet']) {
			hacli_fail("EXISTS", "virtual IP " . $v['subnet'] . " already exists (" . $v['mode'] . " on " . $v['interface'] . ")");
		}
	}
	$vip = $req['vip'];
	$vip['uniqid'] = uniqid();
	$config['virtualip']['vip'][] = $vip;
	write_config($desc);
	interface_ipalias_configure($vip);
	filter_configure();
	hacli_out(array("ok" => true, "changed" => true));
case 'delete-vip':
	require_once("interfaces.inc");
	require_once("filter.inc");
	$current = hacli_read();
	foreach (hacli_list($config['virtualip']['vip']) as $i => $v) {
		if ($v['subnet'] === $req['address']) {
			foreach ($current['frontends'] as $f) {
				foreach ($f['binds'] as $a) {
					if ($a['extaddr_custom'] === $req['address'] || $a['extaddr'] === $req['address'] . "_ipv4") {
						hacli_fail("REFERENCED", "virtual IP " . $req['address'] . " is still bound by frontend " . $f['name']);
					}
				}
			}
			interface_vip_bring_down($v);
			$config['virtualip']['vip'] = hacli_list($config['virtualip']['vip']);
			array_splice($config['virtualip']['vip'], $i, 1);
			write_config($desc);
			filter_configure();
			hacli_out(array("ok" => true, "changed" => true));
		}
	}
	hacli_out(array("ok" => true, "changed" => false));
case 'add-host':
	require_once("services.inc");
	if (!is_array($config['unbound'])) {
		$config['unbound'] = array();
	}
	$config['unbound']['hosts'] = hacli_list($config['unbound']['hosts']);
	foreach ($config['unbound']['hosts'] as $o) {
		if ($o['host'] === $req['host']['host'] && $o['domain'] === $req['host']['domain']) {
			hacli_fail("EXISTS", "a host override for " . $o['host'] . "." . $o['domain'] . " already exists (" . $o['ip'] . ")");
		}
	}
	$config['unbound']['hosts'][] = $req['host'];
	write_config($desc);
	services_unbound_configure();
	hacli_out(array("ok" => true, "changed" => true));
case 'delete-host':
	require_once("services.inc");
	foreach (hacli_list($config['unbound']['hosts']) as $i => $o) {
		if ($o['host'] === $req['host'] && $o['domain'] === $req['domain']) {
			$config['unbound']['hosts'] = hacli_list($config['unbound']['hosts']);
			array_splice($config['unbound']['hosts'], $i, 1);
			write_config($desc);
			services_unbound_configure();
			hacli_out(array("ok" => true, "changed" => true));
		}
	}
	hacli_out(array("ok" => true, "changed" => false));
}
hacli_fail("BAD_REQUEST", "unknown operation " . $op);
