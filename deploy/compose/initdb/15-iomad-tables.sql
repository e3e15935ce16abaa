-- Loaded once by the mysql service of deploy/compose.yaml after 10-moodle-schema.sql: IOMAD's tables
-- that decide who receives an outbox row (copied from cdc_offload/demo/iomad_tables.sql), and the rows a
-- fresh Moodle/IOMAD install has (the admin the cron runs as, the support user's settings, one company).
USE moodle;

CREATE TABLE `mdl_email_template` (
  `id` bigint(10) NOT NULL AUTO_INCREMENT,
  `companyid` bigint(10) NOT NULL,
  `name` varchar(50) NOT NULL DEFAULT '',
  `lang` varchar(20) NOT NULL DEFAULT 'en',
  `subject` varchar(100) DEFAULT NULL,
  `body` longtext DEFAULT NULL,
  `signature` longtext DEFAULT NULL,
  `disabled` tinyint(1) NOT NULL DEFAULT 0,
  `disabledmanager` tinyint(1) NOT NULL DEFAULT 0,
  `disabledsupervisor` tinyint(1) NOT NULL DEFAULT 0,
  `emailto` varchar(1333) DEFAULT NULL,
  `emailtoother` varchar(1333) DEFAULT NULL,
  `emailcc` varchar(1333) DEFAULT NULL,
  `emailccother` varchar(1333) DEFAULT NULL,
  `emailfrom` bigint(20) DEFAULT NULL,
  `emailfromother` varchar(100) DEFAULT NULL,
  `emailreplyto` bigint(20) DEFAULT NULL,
  `emailreplytoother` varchar(100) DEFAULT NULL,
  `repeatperiod` bigint(10) NOT NULL DEFAULT 0,
  `repeatvalue` bigint(10) NOT NULL DEFAULT 0,
  `repeatday` bigint(10) NOT NULL DEFAULT 0,
  `emailfromothername` longtext DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `mdl_emaitemp_comnamlan_ix` (`companyid`,`name`,`lang`),
  KEY `mdl_emaitemp_comlan_ix` (`companyid`,`lang`),
  KEY `mdl_emaitemp_com_ix` (`companyid`)
) ENGINE=InnoDB AUTO_INCREMENT=52 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=COMPRESSED COMMENT='Table for company email templates'
;
CREATE TABLE `mdl_company` (
  `id` bigint(10) NOT NULL AUTO_INCREMENT,
  `name` varchar(50) NOT NULL DEFAULT '',
  `shortname` varchar(25) NOT NULL DEFAULT '',
  `code` varchar(255) DEFAULT NULL,
  `address` longtext DEFAULT NULL,
  `city` varchar(50) NOT NULL DEFAULT '',
  `region` varchar(50) DEFAULT NULL,
  `postcode` varchar(20) DEFAULT NULL,
  `country` varchar(2) NOT NULL DEFAULT '',
  `maildisplay` tinyint(2) NOT NULL DEFAULT 2,
  `mailformat` tinyint(1) NOT NULL DEFAULT 1,
  `maildigest` tinyint(1) NOT NULL DEFAULT 0,
  `autosubscribe` tinyint(1) NOT NULL DEFAULT 1,
  `trackforums` tinyint(1) NOT NULL DEFAULT 0,
  `htmleditor` tinyint(1) NOT NULL DEFAULT 1,
  `screenreader` tinyint(1) NOT NULL DEFAULT 0,
  `timezone` varchar(100) NOT NULL DEFAULT '99',
  `lang` varchar(30) NOT NULL DEFAULT 'en',
  `bgcolor_header` varchar(7) DEFAULT NULL,
  `bgcolor_content` varchar(7) DEFAULT NULL,
  `theme` varchar(50) NOT NULL DEFAULT '',
  `category` bigint(20) NOT NULL DEFAULT 0,
  `profileid` bigint(10) NOT NULL DEFAULT 0,
  `suspended` tinyint(1) NOT NULL DEFAULT 0,
  `customcss` longtext DEFAULT NULL,
  `maincolor` varchar(20) DEFAULT 'null',
  `headingcolor` varchar(20) DEFAULT 'null',
  `linkcolor` varchar(20) DEFAULT 'null',
  `emailprofileid` bigint(20) DEFAULT NULL,
  `supervisorprofileid` bigint(10) NOT NULL DEFAULT 0,
  `managernotify` bigint(10) NOT NULL DEFAULT 0,
  `parentid` bigint(20) NOT NULL DEFAULT 0,
  `ecommerce` tinyint(1) NOT NULL DEFAULT 0,
  `custommenuitems` longtext DEFAULT NULL,
  `managerdigestday` tinyint(1) NOT NULL DEFAULT 0,
  `previousroletemplateid` bigint(20) NOT NULL DEFAULT 0,
  `previousemailtemplateid` bigint(20) NOT NULL DEFAULT 0,
  `hostname` varchar(200) DEFAULT NULL,
  `maxusers` bigint(20) NOT NULL DEFAULT 0,
  `validto` bigint(20) DEFAULT NULL,
  `suspendafter` bigint(10) DEFAULT NULL,
  `companyterminated` tinyint(1) NOT NULL DEFAULT 0,
  `custom1` varchar(255) DEFAULT NULL,
  `custom2` varchar(255) DEFAULT NULL,
  `custom3` varchar(255) DEFAULT NULL,
  `paymentaccount` bigint(10) DEFAULT NULL,
  `departmentprofileid` bigint(20) NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  KEY `mdl_comp_par_ix` (`parentid`),
  KEY `mdl_comp_sho_ix` (`shortname`),
  KEY `mdl_comp_nam_ix` (`name`)
) ENGINE=InnoDB AUTO_INCREMENT=2 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=COMPRESSED COMMENT='company table retrofitted from MySQL'
;
CREATE TABLE `mdl_company_users` (
  `id` bigint(10) NOT NULL AUTO_INCREMENT,
  `companyid` bigint(10) NOT NULL,
  `userid` bigint(10) NOT NULL,
  `managertype` tinyint(1) NOT NULL DEFAULT 0,
  `departmentid` bigint(10) NOT NULL,
  `suspended` tinyint(1) NOT NULL DEFAULT 0,
  `educator` tinyint(1) NOT NULL DEFAULT 0,
  `lastused` bigint(20) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `mdl_compuser_comusedep_uix` (`companyid`,`userid`,`departmentid`),
  KEY `mdl_compuser_comman_ix` (`companyid`,`managertype`),
  KEY `mdl_compuser_depman_ix` (`departmentid`,`managertype`)
) ENGINE=InnoDB AUTO_INCREMENT=44 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=COMPRESSED COMMENT='table to hold the users assigned to a company'
;
CREATE TABLE `mdl_department` (
  `id` bigint(10) NOT NULL AUTO_INCREMENT,
  `name` varchar(255) NOT NULL DEFAULT '',
  `shortname` varchar(32) NOT NULL DEFAULT '',
  `company` bigint(20) NOT NULL DEFAULT 0,
  `parent` bigint(20) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `mdl_depa_idcom_ix` (`id`,`company`),
  KEY `mdl_depa_idcompar_ix` (`id`,`company`,`parent`)
) ENGINE=InnoDB AUTO_INCREMENT=4 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=COMPRESSED COMMENT='Perficio department deginitions'
;
CREATE TABLE `mdl_user_info_field` (
  `id` bigint(10) NOT NULL AUTO_INCREMENT,
  `shortname` varchar(255) NOT NULL DEFAULT 'shortname',
  `name` longtext NOT NULL,
  `datatype` varchar(255) NOT NULL DEFAULT '',
  `description` longtext DEFAULT NULL,
  `descriptionformat` tinyint(2) NOT NULL DEFAULT 0,
  `categoryid` bigint(10) NOT NULL DEFAULT 0,
  `sortorder` bigint(10) NOT NULL DEFAULT 0,
  `required` tinyint(2) NOT NULL DEFAULT 0,
  `locked` tinyint(2) NOT NULL DEFAULT 0,
  `visible` smallint(4) NOT NULL DEFAULT 0,
  `forceunique` tinyint(2) NOT NULL DEFAULT 0,
  `signup` tinyint(2) NOT NULL DEFAULT 0,
  `defaultdata` longtext DEFAULT NULL,
  `defaultdataformat` tinyint(2) NOT NULL DEFAULT 0,
  `param1` longtext DEFAULT NULL,
  `param2` longtext DEFAULT NULL,
  `param3` longtext DEFAULT NULL,
  `param4` longtext DEFAULT NULL,
  `param5` longtext DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB AUTO_INCREMENT=2 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=COMPRESSED COMMENT='Customisable user profile fields'
;
CREATE TABLE `mdl_user_info_data` (
  `id` bigint(10) NOT NULL AUTO_INCREMENT,
  `userid` bigint(10) NOT NULL DEFAULT 0,
  `fieldid` bigint(10) NOT NULL DEFAULT 0,
  `data` longtext NOT NULL,
  `dataformat` tinyint(2) NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  UNIQUE KEY `mdl_userinfodata_usefie_uix` (`userid`,`fieldid`)
) ENGINE=InnoDB AUTO_INCREMENT=9 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=COMPRESSED COMMENT='Data for the customisable user fields'
;
CREATE TABLE `mdl_config` (
  `id` bigint(10) NOT NULL AUTO_INCREMENT,
  `name` varchar(255) NOT NULL DEFAULT '',
  `value` longtext NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `mdl_conf_nam_uix` (`name`)
) ENGINE=InnoDB AUTO_INCREMENT=629 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=COMPRESSED COMMENT='Moodle configuration variables'
;
CREATE TABLE `mdl_task_scheduled` (
  `id` bigint(10) NOT NULL AUTO_INCREMENT,
  `component` varchar(255) NOT NULL DEFAULT '',
  `classname` varchar(255) NOT NULL DEFAULT '',
  `lastruntime` bigint(10) DEFAULT NULL,
  `nextruntime` bigint(10) DEFAULT NULL,
  `blocking` tinyint(2) NOT NULL DEFAULT 0,
  `minute` varchar(200) NOT NULL DEFAULT '',
  `hour` varchar(70) NOT NULL DEFAULT '',
  `day` varchar(90) NOT NULL DEFAULT '',
  `month` varchar(30) NOT NULL DEFAULT '',
  `dayofweek` varchar(25) NOT NULL DEFAULT '',
  `faildelay` bigint(10) DEFAULT NULL,
  `customised` tinyint(2) NOT NULL DEFAULT 0,
  `disabled` tinyint(1) NOT NULL DEFAULT 0,
  `timestarted` bigint(10) DEFAULT NULL,
  `hostname` varchar(255) DEFAULT NULL,
  `pid` bigint(10) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `mdl_tasksche_cla_uix` (`classname`)
) ENGINE=InnoDB AUTO_INCREMENT=126 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=COMPRESSED COMMENT='List of scheduled tasks to be run by cron.'
;

INSERT INTO mdl_config (name, value) VALUES ('supportemail', 'support@academy.example'), ('supportname', 'Demo Academy'),
  ('lang', 'en'), ('siteadmins', '2');
INSERT INTO mdl_user (id, auth, confirmed, mnethostid, username, firstname, lastname, email, timecreated, timemodified)
  VALUES (1, 'manual', 1, 1, 'guest', 'Guest user', ' ', 'root@localhost', 0, 0),
         (2, 'manual', 1, 1, 'admin', 'Admin', 'User', 'admin@academy.example', 0, 0);
INSERT INTO mdl_company (id, name, shortname, city, country) VALUES (1, 'Demo Academy', 'demo', 'Lisbon', 'PT');
INSERT INTO mdl_department (id, name, shortname, company, parent) VALUES (1, 'Demo Academy', 'demo', 1, 0);
