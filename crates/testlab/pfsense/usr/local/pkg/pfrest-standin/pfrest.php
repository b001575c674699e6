<?php
/*
 * pfrest.php: hacli's stand-in for the pfSense REST API package (pfrest,
 * API v2), for the endpoints DOMAIN.md section 5 names. testlab's HTTPS
 * server (crates/testlab/src/pfsense.rs) authenticates the caller and runs
 * this script once per request with the request as JSON on stdin:
 *   {"method", "path" (after /api/v2/), "query": {..}, "body": {..}|null, "user", "client"}
 * It prints pfrest's envelope {code, status, response_id, message, data}.
 *
 * Behaviour imitated from pfrest's models: `id` is the array index (it
 * shifts after a delete), nested objects carry `parent_id`, plural GETs
 * filter on query fields, writes land in config.xml through write_config()
 * and take effect only with "apply": true or a POST to the apply endpoint,
 * and a held config lock gives 503 MODEL_WRITE_CONFIG_LOCKED.
 */

define('PFSTANDIN_NO_AUTOLOAD', 1);
require_once("config.inc");
require_once("haproxy/haproxy.inc");
require_once("interfaces.inc");
require_once("filter.inc");
require_once("services.inc");

class ApiError extends Exception {
	public $httpcode;
	public $response_id;
	public function __construct($code, $response_id, $message) {
		parent::__construct($message);
		$this->httpcode = $code;
		$this->response_id = $response_id;
	}
}

function pfr_status($code) {
	$s = array(200 => 'ok', 400 => 'bad request', 401 => 'unauthorized', 403 => 'forbidden', 404 => 'not found',
	    405 => 'method not allowed', 409 => 'conflict', 500 => 'server error', 503 => 'service unavailable');
	return $s[$code] ?? 'error';
}

function pfr_out($code, $response_id, $message, $data) {
	echo json_encode(array('code' => $code, 'status' => pfr_status($code), 'response_id' => $response_id,
	    'message' => $message, 'data' => $data), JSON_UNESCAPED_SLASHES) . "\n";
}

/* Field definitions. type: string|integer|boolean|base64|nested|foreign|raw. */
function pfr_models() {
	$b = function ($extra = array()) { return array_merge(array('type' => 'boolean', 'true' => 'yes', 'false' => ''), $extra); };
	$name = array('type' => 'string', 'required' => true, 'unique' => true, 'regex' => '/^[a-zA-Z0-9\.\-_]+$/');
	return array(
		'HAProxyBackend' => array(
			'path' => 'installedpackages/haproxy/ha_pools/item', 'haproxy' => true,
			'fields' => array(
				'name' => $name,
				'servers' => array('type' => 'nested', 'model' => 'HAProxyBackendServer', 'internal' => 'ha_servers'),
				'balance' => array('type' => 'string', 'default' => '', 'choices' => array('', 'roundrobin', 'static-rr', 'leastconn', 'source', 'uri')),
				'acls' => array('type' => 'raw', 'internal' => 'a_acl'),
				'actions' => array('type' => 'raw', 'internal' => 'a_actionitems'),
				'connection_timeout' => array('type' => 'integer', 'default' => 30000, 'null' => true),
				'server_timeout' => array('type' => 'integer', 'default' => 30000, 'null' => true),
				'retries' => array('type' => 'integer', 'default' => null, 'null' => true),
				'check_type' => array('type' => 'string', 'default' => 'none', 'choices' => array('none', 'Basic', 'HTTP', 'LDAP', 'MySQL', 'PostgreSQL', 'Redis', 'SMTP', 'ESMTP', 'SSL')),
				'checkinter' => array('type' => 'integer', 'default' => null, 'null' => true, 'cond' => array('!check_type' => 'none')),
				'log_health_checks' => $b(array('default' => false, 'cond' => array('!check_type' => 'none'))),
				'httpcheck_method' => array('type' => 'string', 'default' => 'OPTIONS', 'choices' => array('OPTIONS', 'HEAD', 'GET', 'POST', 'PUT', 'DELETE', 'TRACE'), 'cond' => array('check_type' => 'HTTP')),
				'monitor_uri' => array('type' => 'string', 'default' => '/', 'cond' => array('check_type' => 'HTTP')),
				'monitor_httpversion' => array('type' => 'string', 'default' => 'HTTP/1.0', 'cond' => array('check_type' => 'HTTP')),
				'monitor_username' => array('type' => 'string', 'default' => '', 'cond' => array('check_type' => array('MySQL', 'PostgreSQL'))),
				'monitor_domain' => array('type' => 'string', 'default' => '', 'cond' => array('check_type' => array('SMTP', 'ESMTP'))),
				'agent_checks' => $b(array('default' => false)),
				'persist_cookie_enabled' => $b(array('default' => false)),
				'persist_sticky_type' => array('type' => 'string', 'default' => 'none', 'choices' => array('none', 'stick_sslsessionid', 'stick_sourceipv4', 'stick_sourceipv6', 'stick_cookie_value', 'stick_rdp_cookie')),
				'email_level' => array('type' => 'string', 'default' => ''),
				'email_to' => array('type' => 'string', 'default' => ''),
				'stats_enabled' => $b(array('default' => false)),
				'strict_transport_security' => array('type' => 'integer', 'default' => null, 'null' => true),
				'cookie_attribute_secure' => $b(array('default' => false)),
				'advanced' => array('type' => 'string', 'default' => ''),
				'advanced_backend' => array('type' => 'base64', 'default' => ''),
				'transparent_clientip' => $b(array('default' => false)),
			),
		),
		'HAProxyBackendServer' => array(
			'path' => 'ha_servers/item', 'parent' => 'HAProxyBackend', 'haproxy' => true,
			'fields' => array(
				'name' => array('type' => 'string', 'required' => true, 'unique' => true, 'min' => 2, 'regex' => '/^[a-zA-Z0-9\.\-_]+$/'),
				'status' => array('type' => 'string', 'default' => 'active', 'choices' => array('active', 'backup', 'disabled', 'inactive')),
				'address' => array('type' => 'string', 'required' => true, 'validate' => 'host'),
				'port' => array('type' => 'integer', 'required' => true, 'minv' => 1, 'maxv' => 65535),
				'weight' => array('type' => 'integer', 'default' => 1, 'minv' => 0, 'maxv' => 256),
				'ssl' => array('type' => 'boolean', 'true' => 'yes', 'false' => null, 'default' => false),
				'sslserververify' => array('type' => 'boolean', 'true' => 'yes', 'false' => null, 'default' => false),
				'serverid' => array('type' => 'integer', 'default' => 'random', 'readonly' => true),
				'advanced' => array('type' => 'string', 'default' => ''),
			),
		),
		'HAProxyFrontend' => array(
			'path' => 'installedpackages/haproxy/ha_backends/item', 'haproxy' => true,
			'fields' => array(
				'name' => array_merge($name, array('min' => 2)),
				'descr' => array('type' => 'string', 'default' => ''),
				'status' => array('type' => 'string', 'default' => 'active', 'choices' => array('active', 'disabled')),
				'a_extaddr' => array('type' => 'nested', 'model' => 'HAProxyFrontendAddress', 'internal' => 'a_extaddr'),
				'max_connections' => array('type' => 'integer', 'default' => null, 'null' => true),
				'type' => array('type' => 'string', 'required' => true, 'choices' => array('http', 'https', 'tcp')),
				'ha_acls' => array('type' => 'raw', 'internal' => 'ha_acls'),
				'a_actionitems' => array('type' => 'raw', 'internal' => 'a_actionitems'),
				'backend_serverpool' => array('type' => 'foreign', 'model' => 'HAProxyBackend', 'field' => 'name', 'default' => null),
				'socket_stats' => $b(array('default' => false, 'internal' => 'socket-stats')),
				'dontlognull' => $b(array('default' => false)),
				'dontlog_normal' => $b(array('default' => false, 'internal' => 'dontlog-normal')),
				'log_separate_errors' => $b(array('default' => false, 'internal' => 'log-separate-errors')),
				'log_detailed' => $b(array('default' => false, 'internal' => 'log-detailed')),
				'client_timeout' => array('type' => 'integer', 'default' => 30000, 'null' => true),
				'forwardfor' => $b(array('default' => false, 'cond' => array('type' => 'http'))),
				'httpclose' => array('type' => 'string', 'default' => 'http-keep-alive', 'choices' => array('http-keep-alive', 'http-tunnel', 'httpclose', 'http-server-close', 'forceclose')),
				'advanced_bind' => array('type' => 'string', 'default' => null, 'null' => true),
				'advanced' => array('type' => 'base64', 'default' => null, 'null' => true),
			),
		),
		'HAProxyFrontendAddress' => array(
			'path' => 'a_extaddr/item', 'parent' => 'HAProxyFrontend', 'haproxy' => true,
			'fields' => array(
				'extaddr' => array('type' => 'string', 'required' => true, 'choices' => array('custom', 'any_ipv4', 'any_ipv6', 'localhost_ipv4', 'localhost_ipv6')),
				'extaddr_custom' => array('type' => 'string', 'required' => true, 'cond' => array('extaddr' => 'custom'), 'validate' => 'ip'),
				'extaddr_port' => array('type' => 'integer', 'default' => null, 'null' => true, 'minv' => 1, 'maxv' => 65535),
				'extaddr_ssl' => $b(array('default' => false)),
				'exaddr_advanced' => array('type' => 'string', 'default' => ''),
			),
		),
		'VirtualIP' => array(
			'path' => 'virtualip/vip', 'subsystem' => 'vip',
			'fields' => array(
				'uniqid' => array('type' => 'string', 'default' => 'uniqid', 'readonly' => true),
				'mode' => array('type' => 'string', 'required' => true, 'choices' => array('ipalias', 'proxyarp', 'carp', 'other')),
				'interface' => array('type' => 'string', 'required' => true, 'validate' => 'interface'),
				'type' => array('type' => 'string', 'default' => 'single', 'choices' => array('single', 'network')),
				'subnet' => array('type' => 'string', 'required' => true, 'unique' => true, 'validate' => 'vipsubnet'),
				'subnet_bits' => array('type' => 'integer', 'required' => true, 'minv' => 1, 'maxv' => 128),
				'descr' => array('type' => 'string', 'default' => ''),
				'vhid' => array('type' => 'integer', 'required' => true, 'minv' => 1, 'maxv' => 255, 'cond' => array('mode' => 'carp')),
				'advbase' => array('type' => 'integer', 'default' => 1, 'cond' => array('mode' => 'carp')),
				'advskew' => array('type' => 'integer', 'default' => 0, 'cond' => array('mode' => 'carp')),
				'password' => array('type' => 'string', 'required' => true, 'cond' => array('mode' => 'carp'), 'sensitive' => true),
			),
		),
		'DNSResolverHostOverride' => array(
			'path' => 'unbound/hosts', 'subsystem' => 'unbound', 'sort_by' => 'host', 'unique_together' => array('host', 'domain'),
			'fields' => array(
				'host' => array('type' => 'string', 'required' => true, 'empty' => true, 'validate' => 'hostname'),
				'domain' => array('type' => 'string', 'required' => true, 'validate' => 'hostname'),
				'ip' => array('type' => 'string', 'required' => true, 'many' => ',', 'validate' => 'ip'),
				'descr' => array('type' => 'string', 'default' => ''),
				'aliases' => array('type' => 'nested', 'model' => 'DNSResolverHostOverrideAlias', 'internal' => 'aliases'),
			),
		),
		'DNSResolverHostOverrideAlias' => array(
			'path' => 'aliases/item', 'parent' => 'DNSResolverHostOverride', 'subsystem' => 'unbound',
			'fields' => array(
				'host' => array('type' => 'string', 'required' => true, 'empty' => true, 'validate' => 'hostname'),
				'domain' => array('type' => 'string', 'required' => true, 'validate' => 'hostname'),
				'descr' => array('type' => 'string', 'default' => '', 'internal' => 'description'),
			),
		),
	);
}

/* endpoint => [model, many]; apply endpoints are handled separately. */
function pfr_endpoints() {
	return array(
		'services/haproxy/backend' => array('HAProxyBackend', false),
		'services/haproxy/backends' => array('HAProxyBackend', true),
		'services/haproxy/backend/server' => array('HAProxyBackendServer', false),
		'services/haproxy/backend/servers' => array('HAProxyBackendServer', true),
		'services/haproxy/frontend' => array('HAProxyFrontend', false),
		'services/haproxy/frontends' => array('HAProxyFrontend', true),
		'services/haproxy/frontend/address' => array('HAProxyFrontendAddress', false),
		'services/haproxy/frontend/addresses' => array('HAProxyFrontendAddress', true),
		'firewall/virtual_ip' => array('VirtualIP', false),
		'firewall/virtual_ips' => array('VirtualIP', true),
		'services/dns_resolver/host_override' => array('DNSResolverHostOverride', false),
		'services/dns_resolver/host_overrides' => array('DNSResolverHostOverride', true),
		'services/dns_resolver/host_override/alias' => array('DNSResolverHostOverrideAlias', false),
	);
}

function pfr_model($name) {
	$m = pfr_models();
	return $m[$name];
}

function pfr_internal($fname, $f) {
	return $f['internal'] ?? $fname;
}

/* The list of objects a model holds (under its parent object for nested models). */
function pfr_list($model, $parent_obj = null) {
	$m = pfr_model($model);
	$src = $parent_obj === null ? config_get_path($m['path'], array()) : array_get_path($parent_obj, $m['path'], array());
	return is_array($src) ? $src : array();
}

function pfr_cond_met($f, $obj) {
	if (empty($f['cond'])) {
		return true;
	}
	foreach ($f['cond'] as $key => $want) {
		$neg = $key[0] == '!';
		$k = ltrim($key, '!');
		$have = $obj[$k] ?? null;
		$match = is_array($want) ? in_array($have, $want, true) : $have === $want;
		if ($neg ? $match : !$match) {
			return false;
		}
	}
	return true;
}

/* Internal (config) object -> representation. */
function pfr_repr($model, $obj, $id, $parent_id = null) {
	$m = pfr_model($model);
	$out = array('id' => $id);
	if ($parent_id !== null) {
		$out = array('parent_id' => $parent_id, 'id' => $id);
	}
	$reprview = array();
	foreach ($m['fields'] as $fname => $f) {
		$reprview[$fname] = $obj[pfr_internal($fname, $f)] ?? null;
	}
	foreach ($m['fields'] as $fname => $f) {
		$key = pfr_internal($fname, $f);
		$v = is_array($obj) && array_key_exists($key, $obj) ? $obj[$key] : null;
		if (!pfr_cond_met($f, $reprview)) {
			$out[$fname] = null;
			continue;
		}
		switch ($f['type']) {
		case 'boolean':
			$out[$fname] = ($f['true'] === '' ? $v === '' : $v === $f['true']);
			break;
		case 'integer':
			$out[$fname] = is_numeric($v) ? (int)$v : null;
			break;
		case 'base64':
			$out[$fname] = ($v === null || $v === '') ? $v : base64_decode($v);
			break;
		case 'nested':
			$items = is_array($v) ? ($v['item'] ?? array()) : array();
			$list = array();
			foreach ($items as $i => $child) {
				$list[] = pfr_repr($f['model'], $child, $i, $id);
			}
			$out[$fname] = $list;
			break;
		case 'raw':
			$out[$fname] = is_array($v) ? array_values($v['item'] ?? array()) : array();
			break;
		default:
			if (!empty($f['sensitive'])) {
				$out[$fname] = null;
			} elseif (!empty($f['many'])) {
				$out[$fname] = ($v === null || $v === '') ? array() : explode($f['many'], $v);
			} else {
				$out[$fname] = $v;
			}
		}
	}
	return $out;
}

function pfr_field_error($fname, $id, $msg) {
	throw new ApiError(400, $id, "Field `$fname` $msg");
}

function pfr_validate_kind($fname, $kind, $v) {
	switch ($kind) {
	case 'ip':
		if (!is_ipaddr($v)) {
			pfr_field_error($fname, 'IP_ADDRESS_VALIDATOR_FAILED', "must be a valid IP address, received `$v`.");
		}
		break;
	case 'host':
		if (!is_ipaddr($v) && !is_hostname($v)) {
			pfr_field_error($fname, 'IP_ADDRESS_VALIDATOR_FAILED', "must be a valid IP address or FQDN, received `$v`.");
		}
		break;
	case 'hostname':
		if ($v !== '' && !is_hostname($v)) {
			pfr_field_error($fname, 'HOSTNAME_VALIDATOR_FAILED', "must be a valid hostname, received `$v`.");
		}
		break;
	case 'interface':
		if (config_get_path("interfaces/$v") === null && !preg_match('/^_vip/', $v)) {
			pfr_field_error($fname, 'INTERFACE_FIELD_WITH_NON_EXISTING_INTERFACE', "must be an existing interface, received `$v`.");
		}
		break;
	case 'vipsubnet':
		if (!is_ipaddr($v)) {
			pfr_field_error($fname, 'IP_ADDRESS_VALIDATOR_FAILED', "must be a valid IP address, received `$v`.");
		}
		foreach (config_get_path('interfaces', array()) as $if => $d) {
			if (is_array($d) && (($d['ipaddr'] ?? null) === $v || ($d['ipaddrv6'] ?? null) === $v)) {
				pfr_field_error($fname, 'UNIQUE_FROM_FOREIGN_MODEL_VALIDATOR_FAILED', "must be unique from interface `$if`'s address.");
			}
		}
		break;
	}
}

/* Representation value -> internal value (null: leave the key out). */
function pfr_to_internal($model, $fname, $f, $v, $siblings, $self_index) {
	switch ($f['type']) {
	case 'boolean':
		if (!is_bool($v)) {
			pfr_field_error($fname, 'BOOLEAN_FIELD_INVALID_TYPE', "must be of type boolean.");
		}
		return $v ? $f['true'] : $f['false'];
	case 'integer':
		if ($v === null && !empty($f['null'])) {
			return null;
		}
		if (!is_int($v) && !(is_string($v) && ctype_digit($v))) {
			pfr_field_error($fname, 'INTEGER_FIELD_INVALID_TYPE', "must be of type integer.");
		}
		$v = (int)$v;
		if (isset($f['minv']) && $v < $f['minv']) {
			pfr_field_error($fname, 'INTEGER_FIELD_MINIMUM_CONSTRAINT', "must be greater than or equal to {$f['minv']}.");
		}
		if (isset($f['maxv']) && $v > $f['maxv']) {
			pfr_field_error($fname, 'INTEGER_FIELD_MAXIMUM_CONSTRAINT', "must be less than or equal to {$f['maxv']}.");
		}
		return (string)$v;
	case 'base64':
		if ($v === null && !empty($f['null'])) {
			return null;
		}
		if (!is_string($v)) {
			pfr_field_error($fname, 'STRING_FIELD_INVALID_TYPE', "must be of type string.");
		}
		return $v === '' ? '' : base64_encode($v);
	case 'nested':
		if (!is_array($v)) {
			pfr_field_error($fname, 'NESTED_MODEL_FIELD_INVALID_TYPE', "must be a list of objects.");
		}
		$items = array();
		foreach (array_values($v) as $i => $child) {
			$items[] = pfr_build($f['model'], $child, null, $items, null);
		}
		return count($items) ? array('item' => $items) : '';
	case 'raw':
		if (!is_array($v)) {
			pfr_field_error($fname, 'NESTED_MODEL_FIELD_INVALID_TYPE', "must be a list of objects.");
		}
		$items = array();
		foreach (array_values($v) as $child) {
			if (!is_array($child)) {
				pfr_field_error($fname, 'NESTED_MODEL_FIELD_INVALID_TYPE', "must be a list of objects.");
			}
			$items[] = array_map('strval', array_filter($child, 'is_scalar'));
		}
		return count($items) ? array('item' => $items) : '';
	case 'foreign':
		if ($v === null) {
			return null;
		}
		foreach (pfr_list($f['model']) as $o) {
			if (is_array($o) && ($o[$f['field']] ?? null) === $v) {
				return $v;
			}
		}
		throw new ApiError(404, 'FOREIGN_MODEL_FIELD_VALUE_NOT_FOUND', "Field `$fname` could not locate `{$f['model']}` object with `{$f['field']}` set to `$v`.");
	default:
		if ($v === null && !empty($f['null'])) {
			return null;
		}
		$vals = !empty($f['many']) ? $v : array($v);
		if (!is_array($vals)) {
			pfr_field_error($fname, 'STRING_FIELD_INVALID_TYPE', "must be a list of strings.");
		}
		foreach ($vals as $one) {
			if (!is_string($one)) {
				pfr_field_error($fname, 'STRING_FIELD_INVALID_TYPE', "must be of type string.");
			}
			if ($one === '' && !empty($f['required']) && empty($f['empty'])) {
				pfr_field_error($fname, 'STRING_FIELD_EMPTY_NOT_ALLOWED', "cannot be empty.");
			}
			if (isset($f['choices']) && !in_array($one, $f['choices'], true)) {
				pfr_field_error($fname, 'FIELD_INVALID_CHOICE', "must be one of [" . implode(', ', $f['choices']) . "], received `$one`.");
			}
			if (isset($f['min']) && strlen($one) < $f['min']) {
				pfr_field_error($fname, 'STRING_FIELD_MINIMUM_LENGTH_EXCEEDED', "must be at least {$f['min']} characters.");
			}
			if (isset($f['regex']) && !preg_match($f['regex'], $one)) {
				pfr_field_error($fname, 'REGEX_VALIDATOR_FAILED', "has an invalid value `$one`.");
			}
			if (isset($f['validate'])) {
				pfr_validate_kind($fname, $f['validate'], $one);
			}
		}
		if (!empty($f['unique'])) {
			foreach ($siblings as $i => $o) {
				if ($i !== $self_index && is_array($o) && ($o[pfr_internal($fname, $f)] ?? null) === $v) {
					pfr_field_error($fname, 'FIELD_MUST_BE_UNIQUE', "must be unique. Another `$model` object is already using `$v`.");
				}
			}
		}
		return !empty($f['many']) ? implode($f['many'], $vals) : $v;
	}
}

/*
 * Build the internal object for a create ($existing null) or an update
 * (merge into $existing) from the representation $data.
 */
function pfr_build($model, $data, $existing, $siblings, $self_index) {
	$m = pfr_model($model);
	if (!is_array($data)) {
		throw new ApiError(400, 'MODEL_INVALID_DATA', "The request body must be a JSON object.");
	}
	$obj = is_array($existing) ? $existing : array();
	/* Conditions are judged on the merged representation. */
	$view = array();
	foreach ($m['fields'] as $fname => $f) {
		$key = pfr_internal($fname, $f);
		$view[$fname] = array_key_exists($fname, $data) ? $data[$fname] : ($obj[$key] ?? ($f['default'] ?? null));
	}
	foreach ($m['fields'] as $fname => $f) {
		$key = pfr_internal($fname, $f);
		if (!pfr_cond_met($f, $view)) {
			unset($obj[$key]);
			continue;
		}
		if (!empty($f['readonly'])) {
			if ($existing === null) {
				if (($f['default'] ?? null) === 'random') {
					$obj[$key] = (string)rand(100, 1000);
				} elseif (($f['default'] ?? null) === 'uniqid') {
					$obj[$key] = uniqid();
				}
			}
			continue;
		}
		if (array_key_exists($fname, $data)) {
			$val = pfr_to_internal($model, $fname, $f, $data[$fname], $siblings, $self_index);
		} elseif ($existing !== null) {
			continue;
		} elseif (!empty($f['required'])) {
			throw new ApiError(400, 'FIELD_IS_REQUIRED', "Field `$fname` is required.");
		} elseif (!array_key_exists('default', $f) || $f['default'] === null) {
			if (in_array($f['type'], array('nested', 'raw'))) {
				$obj[$key] = '';
			}
			continue;
		} else {
			$val = pfr_to_internal($model, $fname, $f, $f['default'], array(), null);
		}
		if ($val === null) {
			unset($obj[$key]);
		} else {
			$obj[$key] = $val;
		}
	}
	if (!empty($m['unique_together'])) {
		foreach ($siblings as $i => $o) {
			if ($i === $self_index || !is_array($o)) {
				continue;
			}
			$same = true;
			foreach ($m['unique_together'] as $k) {
				$same = $same && (($o[$k] ?? null) === ($obj[$k] ?? null));
			}
			if ($same) {
				throw new ApiError(400, 'MODEL_FIELDS_NOT_UNIQUE_TOGETHER', "Fields `" . implode('`, `', $m['unique_together']) . "` must be unique together.");
			}
		}
	}
	if ($model == 'VirtualIP' && ($obj['mode'] ?? '') != 'carp' && is_ipaddrv4($obj['subnet'] ?? '') && (int)$obj['subnet_bits'] > 32) {
		throw new ApiError(400, 'VIRTUALIP_IPV4_SUBNET_BITS_EXCEEDED', 'Virtual IP `subnet_bits` cannot exceed 32 when the `subnet` is an IPv4 address');
	}
	return $obj;
}

function pfr_id($v, $what) {
	if ($v === null || $v === '') {
		throw new ApiError(400, 'MODEL_ID_REQUIRED', "Field `$what` is required.");
	}
	if (!is_int($v) && !(is_string($v) && ctype_digit($v))) {
		throw new ApiError(400, 'MODEL_ID_INVALID', "Field `$what` must be a non-negative integer.");
	}
	return (int)$v;
}

/* Whether object $obj of $model is referenced elsewhere (pfrest refuses to delete it). */
function pfr_referenced_by($model, $obj) {
	if ($model != 'HAProxyBackend') {
		return null;
	}
	foreach (pfr_list('HAProxyFrontend') as $fe) {
		if (!is_array($fe)) {
			continue;
		}
		if (($fe['backend_serverpool'] ?? null) === $obj['name']) {
			return "HAProxy Frontend `{$fe['name']}`";
		}
		$actions = is_array($fe['a_actionitems'] ?? null) ? ($fe['a_actionitems']['item'] ?? array()) : array();
		foreach ($actions as $a) {
			if (($a['use_backendbackend'] ?? null) === $obj['name']) {
				return "HAProxy Frontend `{$fe['name']}`";
			}
		}
	}
	return null;
}

function pfr_sort($model) {
	$m = pfr_model($model);
	if (empty($m['sort_by'])) {
		return;
	}
	$list = pfr_list($model);
	$k = $m['sort_by'];
	usort($list, function ($a, $b) use ($k) { return strcmp($a[$k] ?? '', $b[$k] ?? ''); });
	config_set_path($m['path'], $list);
}

/*
 * Release the config lock (LOCK_UN, as pfSense's unlock() does) once the
 * write is done and before anything is applied: a daemonised HAProxy
 * inherits the lock's file descriptor, and only an explicit unlock frees
 * the lock while that process lives.
 */
function pfr_release_lock() {
	global $pfs_held_locks;
	if (isset($pfs_held_locks['config'])) {
		$fp = $pfs_held_locks['config'];
		unset($pfs_held_locks['config']);
		unlock($fp);
	}
}

function pfr_apply_model($model) {
	pfr_release_lock();
	$m = pfr_model($model);
	if (!empty($m['haproxy'])) {
		return pfr_apply('services/haproxy/apply');
	}
	if (($m['subsystem'] ?? '') == 'vip') {
		return pfr_apply('firewall/virtual_ip/apply');
	}
	if (($m['subsystem'] ?? '') == 'unbound') {
		return pfr_apply('services/dns_resolver/apply');
	}
}

function pfr_mark_pending($model, $obj) {
	global $g, $d_haproxyconfdirty_path;
	$m = pfr_model($model);
	if (!empty($m['haproxy'])) {
		touch($d_haproxyconfdirty_path);
	} elseif (!empty($m['subsystem'])) {
		mark_subsystem_dirty($m['subsystem']);
	}
	if ($model == 'VirtualIP' && is_array($obj)) {
		$file = "{$g['tmp_path']}/.firewall_virtual_ip.apply";
		$pending = file_exists($file) ? @unserialize(file_get_contents($file)) : array();
		if (!is_array($pending)) {
			$pending = array();
		}
		$pending[$obj['uniqid']] = $obj;
		file_put_contents($file, serialize($pending));
	}
}

function pfr_apply($endpoint) {
	global $g, $d_haproxyconfdirty_path;
	switch ($endpoint) {
	case 'services/haproxy/apply':
		$messages = "";
		$ok = haproxy_check_and_run($messages, true);
		if (!$ok) {
			throw new ApiError(500, 'HAPROXY_APPLY_FAILED', "HAProxy refused the configuration: " . trim(html_entity_decode(strip_tags(str_replace("<br/>", " ", $messages)))));
		}
		@unlink($d_haproxyconfdirty_path);
		return array('applied' => true);
	case 'firewall/virtual_ip/apply':
		$file = "{$g['tmp_path']}/.firewall_virtual_ip.apply";
		$pending = file_exists($file) ? @unserialize(file_get_contents($file)) : array();
		foreach (is_array($pending) ? $pending : array() as $uniqid => $vip) {
			foreach (config_get_path('virtualip/vip', array()) as $cur) {
				if (is_array($cur) && ($cur['uniqid'] ?? null) == $uniqid) {
					interface_ipalias_configure($cur);
				}
			}
		}
		@unlink($file);
		filter_configure();
		clear_subsystem_dirty('vip');
		return array('applied' => true);
	case 'services/dns_resolver/apply':
		services_unbound_configure();
		clear_subsystem_dirty('unbound');
		return array('applied' => true);
	}
}

function pfr_apply_status($endpoint) {
	global $d_haproxyconfdirty_path;
	switch ($endpoint) {
	case 'services/haproxy/apply':
		return array('applied' => !file_exists($d_haproxyconfdirty_path));
	case 'firewall/virtual_ip/apply':
		return array('applied' => !is_subsystem_dirty('vip'));
	case 'services/dns_resolver/apply':
		return array('applied' => !is_subsystem_dirty('unbound'));
	}
}

function pfr_filter_match($repr, $query) {
	foreach ($query as $k => $want) {
		if (in_array($k, array('limit', 'offset', 'sort_by', 'sort_order', 'id'))) {
			continue;
		}
		if (!array_key_exists($k, $repr)) {
			return false;
		}
		$have = $repr[$k];
		if (is_bool($have)) {
			$have = $have ? 'true' : 'false';
		}
		if (is_array($have) || (string)$have !== (string)$want) {
			return false;
		}
	}
	return true;
}

function pfr_handle($req) {
	global $config, $pfs_held_locks, $pfs_config_user;

	$method = strtoupper($req['method'] ?? 'GET');
	$path = trim($req['path'] ?? '', '/');
	$query = is_array($req['query'] ?? null) ? $req['query'] : array();
	$body = $req['body'] ?? null;
	if ($body === null) {
		$body = array();
	}
	$pfs_config_user = ($req['user'] ?? 'admin') . '@' . ($req['client'] ?? '127.0.0.1') . ' (API)';
	$applyendpoints = array('services/haproxy/apply', 'firewall/virtual_ip/apply', 'services/dns_resolver/apply');
	$endpoints = pfr_endpoints();
	if (!in_array($path, $applyendpoints) && !isset($endpoints[$path])) {
		throw new ApiError(404, 'ENDPOINT_NOT_FOUND', "Endpoint /api/v2/$path does not exist.");
	}
	$mutating = $method != 'GET';
	if ($mutating) {
		$settings = pfs_settings();
		$wait = $settings['pfrest_lock_wait'] ?? 1;
		$lk = try_lock('config', $wait);
		if (!$lk) {
			throw new ApiError(503, 'MODEL_WRITE_CONFIG_LOCKED', "The configuration is locked by another process; try again later.");
		}
		$pfs_held_locks['config'] = $lk;
	}
	$config = $mutating ? parse_config() : parse_xml_config(g_get('conf_path') . '/config.xml', array('pfsense'));
	if (!is_array($config)) {
		throw new ApiError(500, 'CONFIG_UNREADABLE', "config.xml could not be read.");
	}

	if (in_array($path, $applyendpoints)) {
		if ($method == 'GET') {
			return pfr_apply_status($path);
		}
		if ($method != 'POST') {
			throw new ApiError(405, 'ENDPOINT_METHOD_NOT_ALLOWED', "Method $method is not allowed for /api/v2/$path.");
		}
		pfr_release_lock();
		return pfr_apply($path);
	}

	list($model, $many) = $endpoints[$path];
	$m = pfr_model($model);
	$parent_model = $m['parent'] ?? null;
	$args = array_merge($query, is_array($body) ? $body : array());

	if ($many) {
		if ($method != 'GET') {
			throw new ApiError(405, 'ENDPOINT_METHOD_NOT_ALLOWED', "Method $method is not allowed for /api/v2/$path.");
		}
		$out = array();
		if ($parent_model) {
			foreach (pfr_list($parent_model) as $pid => $parent) {
				foreach (pfr_list($model, $parent) as $i => $o) {
					$r = pfr_repr($model, $o, $i, $pid);
					if (pfr_filter_match($r, $query)) {
						$out[] = $r;
					}
				}
			}
		} else {
			foreach (pfr_list($model) as $i => $o) {
				$r = pfr_repr($model, $o, $i);
				if (pfr_filter_match($r, $query)) {
					$out[] = $r;
				}
			}
		}
		return $out;
	}

	/* Singular endpoints: locate the list (and the parent). */
	$parent_id = null;
	$listpath = $m['path'];
	if ($parent_model) {
		$parent_id = pfr_id($args['parent_id'] ?? null, 'parent_id');
		$parents = pfr_list($parent_model);
		if (!isset($parents[$parent_id]) || !is_array($parents[$parent_id])) {
			throw new ApiError(404, 'MODEL_PARENT_NOT_FOUND', "Parent `$parent_model` object with ID `$parent_id` does not exist.");
		}
		$listpath = pfr_model($parent_model)['path'] . "/$parent_id/" . $m['path'];
	}
	$list = config_get_path($listpath, array());
	if (!is_array($list)) {
		$list = array();
	}
	$verbose = $model;
	$data = array_diff_key(is_array($body) ? $body : array(), array('id' => 1, 'parent_id' => 1, 'apply' => 1));
	$apply = ($body['apply'] ?? false) === true;

	switch ($method) {
	case 'GET':
		$id = pfr_id($args['id'] ?? null, 'id');
		if (!isset($list[$id]) || !is_array($list[$id])) {
			throw new ApiError(404, 'MODEL_OBJECT_NOT_FOUND', "Object `$verbose` with ID `$id` does not exist.");
		}
		return pfr_repr($model, $list[$id], $id, $parent_id);
	case 'POST':
		$obj = pfr_build($model, $data, null, $list, null);
		$list = array_values($list);
		$list[] = $obj;
		$newid = count($list) - 1;
		if ($parent_model) {
			$p = config_get_path(pfr_model($parent_model)['path'] . "/$parent_id");
			$container = explode('/', $m['path'])[0];
			if (!is_array($p[$container] ?? null)) {
				$p[$container] = array();
			}
			$p[$container]['item'] = $list;
			config_set_path(pfr_model($parent_model)['path'] . "/$parent_id", $p);
		} else {
			config_set_path($listpath, $list);
		}
		pfr_sort($model);
		write_config("Added $verbose via API");
		if (!empty($m['sort_by'])) {
			foreach (config_get_path($listpath, array()) as $i => $o) {
				if ($o == $obj) {
					$newid = $i;
				}
			}
		}
		pfr_mark_pending($model, $obj);
		if ($apply) {
			pfr_apply_model($model);
		}
		$saved = config_get_path("$listpath/$newid");
		return pfr_repr($model, is_array($saved) ? $saved : $obj, $newid, $parent_id);
	case 'PATCH':
		$id = pfr_id($args['id'] ?? null, 'id');
		if (!isset($list[$id]) || !is_array($list[$id])) {
			throw new ApiError(404, 'MODEL_OBJECT_NOT_FOUND', "Object `$verbose` with ID `$id` does not exist.");
		}
		$obj = pfr_build($model, $data, $list[$id], $list, $id);
		config_set_path("$listpath/$id", $obj);
		pfr_sort($model);
		write_config("Modified $verbose via API");
		pfr_mark_pending($model, $obj);
		if ($apply) {
			pfr_apply_model($model);
		}
		foreach (config_get_path($listpath, array()) as $i => $o) {
			if ($o == $obj) {
				$id = $i;
			}
		}
		return pfr_repr($model, $obj, $id, $parent_id);
	case 'DELETE':
		$id = pfr_id($args['id'] ?? null, 'id');
		if (!isset($list[$id]) || !is_array($list[$id])) {
			throw new ApiError(404, 'MODEL_OBJECT_NOT_FOUND', "Object `$verbose` with ID `$id` does not exist.");
		}
		$obj = $list[$id];
		$by = pfr_referenced_by($model, $obj);
		if ($by !== null) {
			throw new ApiError(409, 'MODEL_CANNOT_BE_DELETED_WHILE_REFERENCED', "Object `$verbose` with ID `$id` cannot be deleted while it is referenced by $by.");
		}
		$repr = pfr_repr($model, $obj, $id, $parent_id);
		config_del_path("$listpath/$id");
		if ($parent_model && count(config_get_path($listpath, array())) == 0) {
			config_set_path(dirname($listpath), '');
		}
		write_config("Deleted $verbose via API");
		if ($model == 'VirtualIP') {
			interface_vip_bring_down($obj);
		}
		pfr_mark_pending($model, null);
		if ($apply) {
			pfr_apply_model($model);
		}
		return $repr;
	default:
		throw new ApiError(405, 'ENDPOINT_METHOD_NOT_ALLOWED', "Method $method is not allowed for /api/v2/$path.");
	}
}

$req = json_decode(stream_get_contents(STDIN), true);
try {
	if (!is_array($req)) {
		throw new ApiError(400, 'REQUEST_INVALID', "The stand-in received no request.");
	}
	$data = pfr_handle($req);
	pfr_release_lock();
	pfr_out(200, 'SUCCESS', '', $data);
} catch (ApiError $e) {
	pfr_release_lock();
	pfr_out($e->httpcode, $e->response_id, $e->getMessage(), array());
} catch (Throwable $e) {
	pfr_release_lock();
	pfr_out(500, 'SERVER_ERROR', $e->getMessage() . ' at ' . basename($e->getFile()) . ':' . $e->getLine(), array());
}
