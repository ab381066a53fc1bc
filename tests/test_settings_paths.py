import json

from desktop import paths
from desktop.engine.tokenizer_files import write_clip_tokenizer
from desktop.settings import Settings, load_settings, save_settings


def test_home_variable_puts_every_dir_under_one_folder(isolated_home):
    for folder in (paths.config_dir(), paths.data_dir(), paths.cache_dir(), paths.default_gallery_dir()):
        assert isolated_home in folder.parents


def test_resources_are_found_from_the_source_tree():
    assert (paths.shipped_configs_dir() / "sd15" / "unet" / "config.json").is_file()


def test_settings_round_trip_and_ignore_unknown_keys():
    save_settings(Settings(device="cpu", model_folders=["/models"]))
    data = json.loads(paths.config_dir().joinpath("settings.json").read_text())
    data["from_the_future"] = True
    paths.config_dir().joinpath("settings.json").write_text(json.dumps(data))
    loaded = load_settings()
    assert loaded.device == "cpu" and loaded.model_folders == ["/models"]


def test_broken_settings_are_kept_aside_and_defaults_used():
    path = paths.config_dir() / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert load_settings() == Settings()
    assert (path.parent / "settings.json.broken").read_text() == "{not json"


def test_tokenizer_encodes_every_word_as_one_token(tmp_path):
    from transformers import CLIPTokenizer

    words = ["red", "green", "background", "triangle", "purple", "a", "on"]
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(words, tmp_path))
    for word in words:
        ids = tok(word).input_ids
        assert len(ids) == 3 and tok.convert_ids_to_tokens(ids[1]) == word + "</w>"
    assert len(tok("zebra crossing").input_ids) > 4  # unknown words still tokenize, by letters
