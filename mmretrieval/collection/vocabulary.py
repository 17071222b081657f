"""The built-in vocabulary that names clusters zero-shot: short labels a personal collection is made of, and the
prompt templates each is embedded through (a label's vector is the mean over its templates, as CLIP's zero-shot
classifiers do; per modality of the members, so a cluster of sounds is named by "the sound of ...")."""
from __future__ import annotations

LABELS: tuple[str, ...] = (
    # people and animals
    "people", "a person", "a portrait", "a selfie", "a group of friends", "a crowd", "a baby", "children", "a family",
    "a wedding", "a birthday party", "a dog", "a cat", "a bird", "a horse", "a cow", "a sheep", "fish", "insects",
    "a butterfly", "wild animals", "a zoo",
    # places and scenes
    "a beach", "the sea", "a lake", "a river", "a waterfall", "mountains", "snow", "a forest", "a field", "a garden",
    "flowers", "trees", "the sky", "clouds", "a sunset", "the night sky", "a city", "a street", "buildings",
    "a skyline", "a bridge", "a church", "a castle", "a museum", "a park", "a playground", "a desert", "a road",
    "a house", "a kitchen", "a living room", "a bedroom", "an office", "a classroom", "a shop", "a restaurant",
    "a stadium", "a concert", "a festival", "a market", "an airport", "a train station",
    # things
    "food", "a meal", "a cake", "fruit", "vegetables", "drinks", "coffee", "a car", "a bicycle", "a motorcycle",
    "a train", "a plane", "a boat", "a bus", "furniture", "clothes", "shoes", "toys", "books", "a computer",
    "a phone", "a screen", "a television", "tools", "a painting", "a drawing", "a sculpture", "a statue",
    "jewellery", "a watch", "a clock", "a lamp", "plants", "a sign", "a map", "a chart", "a diagram", "a logo",
    "an icon", "a screenshot", "a document", "a receipt", "an invoice", "a letter", "a form", "a page of text",
    "handwriting", "a table of numbers", "a slide", "a poster", "a ticket", "a passport", "a photo of a photo",
    # sports and activities
    "sports", "football", "running", "swimming", "skiing", "cycling", "hiking", "camping", "cooking", "dancing",
    "music", "a musical instrument", "a guitar", "a piano", "drums", "a game",
    # kinds of picture
    "a black and white photo", "a blurry photo", "a dark photo", "a close-up", "an aerial view", "a pattern",
    "a texture", "abstract art", "a cartoon", "a rendering", "text",
    # colours and shapes
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey",
    "a circle", "a square", "a triangle", "a star", "a cross", "a ring", "a line", "dots", "stripes",
    # sounds
    "speech", "a conversation", "a lecture", "a podcast", "singing", "a choir", "a song", "classical music",
    "rock music", "electronic music", "jazz", "applause", "laughter", "a crowd cheering", "footsteps", "a door",
    "traffic", "a car engine", "a siren", "an alarm", "a phone ringing", "a beep", "a tone", "a low tone",
    "a high tone", "a rising tone", "a falling tone", "a whistle", "a bell", "rain", "wind", "thunder",
    "water flowing", "waves", "birdsong", "a dog barking", "a cat meowing", "silence", "noise", "static",
    # documents and texts
    "a recipe", "a contract", "a report", "a manual", "a scientific paper", "an email", "a news article",
    "a story", "a poem", "notes", "a list", "code", "a spreadsheet", "a bank statement", "a medical record",
    "a travel itinerary", "a presentation", "subtitles", "a transcript",
)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "image": ("a photo of {}.", "a picture of {}.", "an image showing {}.", "{}"),
    "audio": ("the sound of {}.", "a recording of {}.", "{}"),
    "text": ("a text about {}.", "{}"),
}
DEFAULT_TEMPLATES = ("{}",)


def prompts(modality: str, labels: tuple[str, ...] = LABELS) -> list[list[str]]:
    """Each label's prompts for members of `modality`."""
    return [[t.format(label) for t in TEMPLATES.get(modality, DEFAULT_TEMPLATES)] for label in labels]
