-- The FreePBX tables of NethVoice's `asterisk` database that the bypass module reads
-- and writes, with the column definitions of a FreePBX 16 / MariaDB 10.11 dump
-- (`mysqldump asterisk`, core and sipsettings modules) and the rows NethVoice's
-- mariadb/docker-entrypoint-initdb.d scripts create.
--
-- The sandbox runs it after setting these session variables:
--   @asterisk_sip_port (TCP), @asterisk_sip_udp_port, @asterisk_sips_port,
--   @proxy_ip, @proxy_port  (the proxy's SERVICE_IP and port, as in NethVoice's env)

CREATE DATABASE IF NOT EXISTS `asterisk`;
USE `asterisk`;

CREATE TABLE `trunks` (
  `trunkid` int(11) NOT NULL DEFAULT 0,
  `tech` varchar(20) NOT NULL,
  `channelid` varchar(190) NOT NULL DEFAULT '',
  `name` varchar(50) NOT NULL DEFAULT '',
  `outcid` varchar(40) NOT NULL DEFAULT '',
  `keepcid` varchar(4) DEFAULT 'off',
  `maxchans` varchar(6) DEFAULT '',
  `failscript` varchar(255) NOT NULL DEFAULT '',
  `dialoutprefix` varchar(255) NOT NULL DEFAULT '',
  `usercontext` varchar(255) DEFAULT NULL,
  `provider` varchar(40) DEFAULT NULL,
  `disabled` varchar(4) DEFAULT 'off',
  `continue` varchar(4) DEFAULT 'off',
  `routedisplay` varchar(4) DEFAULT 'on',
  PRIMARY KEY (`trunkid`,`tech`,`channelid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `pjsip` (
  `id` varchar(20) NOT NULL DEFAULT '-1',
  `keyword` varchar(30) NOT NULL DEFAULT '',
  `data` varchar(8100) NOT NULL,
  `flags` int(11) NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`,`keyword`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `sip` (
  `id` varchar(20) NOT NULL DEFAULT '-1',
  `keyword` varchar(30) NOT NULL DEFAULT '',
  `data` varchar(8100) NOT NULL,
  `flags` int(11) NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`,`keyword`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `kvstore_Sipsettings` (
  `key` char(255) NOT NULL,
  `val` varchar(4096) DEFAULT NULL,
  `type` char(16) DEFAULT NULL,
  `id` char(255) DEFAULT NULL,
  UNIQUE KEY `uniqueindex` (`key`(190),`id`(190)),
  KEY `keyindex` (`key`(190)),
  KEY `idindex` (`id`(190))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Legacy chan_sip settings; NethVoice still writes `bindport` here.
CREATE TABLE `sipsettings` (
  `keyword` varchar(50) NOT NULL DEFAULT '',
  `seq` tinyint(1) NOT NULL DEFAULT 0,
  `type` tinyint(1) NOT NULL DEFAULT 0,
  `data` varchar(255) NOT NULL DEFAULT '',
  PRIMARY KEY (`keyword`,`seq`,`type`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

SET @outbound_proxy = CONCAT('sip:', @proxy_ip, ':', @proxy_port, ';lr');

-- Three pjsip trunks:
--   1 Telco-Main     registered, through the proxy (the normal NethVoice case)
--   2 Custom-Voip    registered, through the proxy, name already contains "custom"
--                    (migration.php leaves its outbound_proxy alone)
--   3 Mediant-SBC    IP-authenticated on-premise SBC (192.0.2.10), no registration
INSERT INTO `trunks` VALUES
(1,'pjsip','Telco-Main','Telco-Main','','off','','','','','','off','off','on'),
(2,'pjsip','Custom-Voip','Custom-Voip','','off','','','','','','off','off','on'),
(3,'pjsip','Mediant-SBC','Mediant-SBC','','off','','','','','','off','off','on');

INSERT INTO `pjsip` (`id`,`keyword`,`data`,`flags`) VALUES
('1','trunk_name','Telco-Main',0),
('1','sv_trunk_name','Telco-Main',0),
('1','sv_channelid','Telco-Main',0),
('1','extdisplay','OUT_1',0),
('1','sip_server','sip.telco.example',0),
('1','sip_server_port','5060',0),
('1','transport','0.0.0.0-udp',0),
('1','registration','send',0),
('1','authentication','outbound',0),
('1','outbound_proxy',@outbound_proxy,0),
('1','username','0510000001',0),
('1','secret','telco-secret',0),
('1','contact_user','0510000001',0),
('1','from_user','0510000001',0),
('1','from_domain','sip.telco.example',0),
('1','match','',0),
('1','context','from-pstn',0),
('1','codecs','alaw,ulaw',0),
('1','expiration','3600',0),
('1','qualify_frequency','60',0),
('1','rewrite_contact','no',0),
('1','rtp_symmetric','yes',0),
('1','force_rport','yes',0),
('2','trunk_name','Custom-Voip',0),
('2','sv_trunk_name','Custom-Voip',0),
('2','sv_channelid','Custom-Voip',0),
('2','extdisplay','OUT_2',0),
('2','sip_server','voip.provider.example',0),
('2','sip_server_port','5060',0),
('2','transport','0.0.0.0-udp',0),
('2','registration','send',0),
('2','authentication','outbound',0),
('2','outbound_proxy',@outbound_proxy,0),
('2','username','0510000002',0),
('2','secret','voip-secret',0),
('2','contact_user','0510000002',0),
('2','from_user','0510000002',0),
('2','from_domain','voip.provider.example',0),
('2','match','',0),
('2','context','from-pstn',0),
('2','codecs','alaw,ulaw',0),
('2','expiration','3600',0),
('2','qualify_frequency','60',0),
('2','rewrite_contact','no',0),
('2','rtp_symmetric','yes',0),
('2','force_rport','yes',0),
('3','trunk_name','Mediant-SBC',0),
('3','sv_trunk_name','Mediant-SBC',0),
('3','sv_channelid','Mediant-SBC',0),
('3','extdisplay','OUT_3',0),
('3','sip_server','192.0.2.10',0),
('3','sip_server_port','5060',0),
('3','transport','0.0.0.0-udp',0),
('3','registration','none',0),
('3','authentication','off',0),
('3','outbound_proxy',@outbound_proxy,0),
('3','username','',0),
('3','secret','',0),
('3','contact_user','',0),
('3','from_user','',0),
('3','from_domain','',0),
('3','match','192.0.2.10',0),
('3','context','from-pstn',0),
('3','codecs','alaw,ulaw',0),
('3','expiration','3600',0),
('3','qualify_frequency','60',0),
('3','rewrite_contact','no',0),
('3','rtp_symmetric','yes',0),
('3','force_rport','yes',0);

-- One physical extension: migration.php and configure-module rewrite its
-- outbound_proxy too, so a bypass must never touch it.
INSERT INTO `sip` (`id`,`keyword`,`data`,`flags`) VALUES
('201','account','201',0),
('201','callerid','Reception <201>',0),
('201','context','from-internal',0),
('201','outbound_proxy',@outbound_proxy,0),
('201','transport','0.0.0.0-udp',0);

-- NAT settings as NethVoice leaves them: external address empty, no `localnets`
-- row (the proxy handles NAT; NS7 migrations delete it), per-transport ports from
-- the environment (70_asterisk_ports.sh, sync-asterisk-ports).
INSERT INTO `kvstore_Sipsettings` (`key`,`val`,`type`,`id`) VALUES
('binds','{"wss":{"0.0.0.0":"on"},"udp":{"0.0.0.0":"on"},"tcp":{"0.0.0.0":"on"},"ws":{"0.0.0.0":"on"},"tls":{"0.0.0.0":"on"}}','json-arr','noid'),
('externip','',NULL,'noid'),
('nat','yes',NULL,'noid'),
('nat.mode','externip',NULL,'noid'),
('externip.val','',NULL,'noid'),
('udpport-0.0.0.0',@asterisk_sip_udp_port,NULL,'noid'),
('tcpport-0.0.0.0',@asterisk_sip_port,NULL,'noid'),
('tlsport-0.0.0.0',@asterisk_sips_port,NULL,'noid'),
('bindport',@asterisk_sip_port,NULL,'noid'),
('tlsbindport',@asterisk_sips_port,NULL,'noid'),
('udpextip-0.0.0.0','',NULL,'noid'),
('tcpextip-0.0.0.0','',NULL,'noid'),
('tlsextip-0.0.0.0','',NULL,'noid'),
('udplocalnet-0.0.0.0','',NULL,'noid'),
('tcplocalnet-0.0.0.0','none',NULL,'noid'),
('tlslocalnet-0.0.0.0','',NULL,'noid');

INSERT INTO `sipsettings` (`keyword`,`data`,`seq`,`type`) VALUES
('bindport',@asterisk_sip_udp_port,1,0),
('externip_val','',40,0),
('nat','yes',39,0),
('nat_mode','externip',10,0);
